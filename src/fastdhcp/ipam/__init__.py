"""Docker's remote IPAM API: the HTTP layer (http.py), the driver that maps it
onto DHCP leases (driver.py), and the per-network options (options.py)."""
