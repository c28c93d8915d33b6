/* _fuzz_guard.guarded(data, skip=0): bytes(data[skip:]) in a malloc() block of
 * its own, for tests/fuzz/fuzz_codec_atheris.py (scripts/fuzz-codec builds it
 * into build/fuzz/).
 *
 * The fuzzing workers run on pymalloc (PYTHONMALLOC unset), where a bytes object
 * of under ~480 bytes sits in a pool beside other objects: the compiled codec
 * reading past the end of its input would read a neighbour, and ASan would say
 * nothing. The codec keeps the input it is given (no copy) and its accessors read
 * it in place, so the harness hands it these instead: ASan's red zone follows the
 * terminating NUL, as it would under PYTHONMALLOC=malloc.
 *
 * Freeing is CPython's: bytes_dealloc calls PyObject_Free, and pymalloc passes an
 * address outside its arenas to PyMem_RawFree, i.e. free() (as it does for every
 * object over 512 bytes). Under PYTHONMALLOC=malloc, PyObject_Free is free().
 * Not for the pymalloc_debug or malloc_debug allocators (PYTHONMALLOC=*_debug,
 * or a debug build of CPython), whose free expects its own header. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static PyObject *guarded(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t skip = 0, size;
    PyBytesObject *op;

    (void)module;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "guarded(data, skip=0)");
        return NULL;
    }
    if (nargs == 2) {
        skip = PyLong_AsSsize_t(args[1]);
        if (skip == -1 && PyErr_Occurred())
            return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (skip < 0 || skip > view.len)
        skip = view.len;
    size = view.len - skip;
    op = malloc(offsetof(PyBytesObject, ob_sval) + (size_t)size + 1);
    if (op == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    PyObject_InitVar((PyVarObject *)op, &PyBytes_Type, size);
_Pragma("GCC diagnostic push")
_Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")
    op->ob_shash = -1;
_Pragma("GCC diagnostic pop")
    memcpy(op->ob_sval, (const char *)view.buf + skip, (size_t)size);
    op->ob_sval[size] = '\0';
    PyBuffer_Release(&view);
    return (PyObject *)op;
}

static PyMethodDef methods[] = {
    {"guarded", (PyCFunction)(void (*)(void))guarded, METH_FASTCALL,
     "bytes(data[skip:]) in a malloc() block of its own (ASan red zones around it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fuzz_guard", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__fuzz_guard(void)
{
    return PyModule_Create(&module);
}
