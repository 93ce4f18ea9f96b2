/* protocol._ccodec: compiled fast path of protocol/codec.py (msgpack envelopes).
 *
 * encode(version, kind, run_id, sender, receiver, iteration, seq, t_send_ns, payload) -> bytes | None
 *     The exact bytes of the pure-Python encoder (msgpack.Packer(default=_pack_default)) for the
 *     common types; None for anything else (the caller then runs the Python encoder, which gives
 *     the bytes or raises the typed error).
 * decode(data, limits) -> Envelope | None
 *     The Envelope of a frame in the canonical subset (exactly one 9-element array, every field
 *     valid, payload of scalars / flat lists / ext arrays within the limits); None for anything
 *     else (the caller then runs the Python decoder, which raises the typed error or decodes it).
 *     limits = (max_message_bytes, max_str_bytes, max_list_len, max_fields, max_run_id).
 * setup(envelope_type, kinds, ndarray_type, frombuffer, f32_dtype, i64_dtype)
 *     Python objects the two functions need, given once at import of protocol.codec.
 *
 * Neither function raises anything but MemoryError: every other failure is "None, fall back".
 * Internally a helper returns -1 (or NULL) for "fall back"; the top level clears any exception
 * except MemoryError and returns None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define EXT_F32 1
#define EXT_I64 2
#define MAX_NDIM 8
#define WIRE_LEN 9
#define U32_MAX 0xFFFFFFFFULL

/* objects given by setup() (strong references) */
static PyObject *g_envelope, *g_kinds, *g_ndarray, *g_frombuffer, *g_f32, *g_i64;
/* dtype -> ext code (int 1 or 2; 0 = not encodable here), like codec._EXT_OF */
static PyObject *g_ext_cache;
/* interned names */
static PyObject *s_astype, *s_tobytes, *s_shape, *s_reshape, *s_dtype, *s_kind, *s_copy_kw;

/* Top-level failure: MemoryError propagates, anything else (or nothing) -> None. */
static PyObject *
fall_back(void)
{
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError))
            return NULL;
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

/* ================================== encoder ================================== */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
    char small[512];
} Buf;

static int
buf_grow(Buf *b, Py_ssize_t n)
{
    Py_ssize_t cap = b->cap;
    char *p;
    if (n > PY_SSIZE_T_MAX / 2 - b->len)
        return -1;
    while (cap < b->len + n)
        cap *= 2;
    if (b->p == b->small) {
        p = PyMem_Malloc(cap);
        if (p != NULL)
            memcpy(p, b->small, b->len);
    }
    else {
        p = PyMem_Realloc(b->p, cap);
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

#define RESERVE(b, n) ((b)->len + (Py_ssize_t)(n) <= (b)->cap ? 0 : buf_grow((b), (n)))

static int
put(Buf *b, const void *src, Py_ssize_t n)
{
    if (RESERVE(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* a type byte followed by an n-byte big-endian number (n = 0, 1, 2, 4, 8) */
static int
put_tag(Buf *b, unsigned char tag, uint64_t v, int n)
{
    unsigned char *q;
    if (RESERVE(b, 1 + n) < 0)
        return -1;
    q = (unsigned char *)b->p + b->len;
    q[0] = tag;
    for (int i = n; i >= 1; i--, v >>= 8)
        q[i] = (unsigned char)(v & 0xFF);
    b->len += 1 + n;
    return 0;
}

/* smallest msgpack int (msgpack's pack_real_int64 / uint64) */
static int
pack_i64(Buf *b, long long v)
{
    if (v >= 0) {
        if (v < 128)
            return put_tag(b, (unsigned char)v, 0, 0);  /* positive fixint 0x00-0x7f */
        if (v < 256)
            return put_tag(b, 0xcc, (uint64_t)v, 1);     /* uint8 */
        if (v < 65536)
            return put_tag(b, 0xcd, (uint64_t)v, 2);     /* uint16 */
        if ((unsigned long long)v <= U32_MAX)
            return put_tag(b, 0xce, (uint64_t)v, 4);     /* uint32 */
        return put_tag(b, 0xcf, (uint64_t)v, 8);         /* uint64 */
    }
    if (v >= -32)
        return put_tag(b, (unsigned char)(v & 0xFF), 0, 0);  /* negative fixint 0xe0-0xff */
    if (v >= -128)
        return put_tag(b, 0xd0, (uint64_t)v & 0xFF, 1);        /* int8 */
    if (v >= -32768)
        return put_tag(b, 0xd1, (uint64_t)v & 0xFFFF, 2);      /* int16 */
    if (v >= -2147483648LL)
        return put_tag(b, 0xd2, (uint64_t)v & U32_MAX, 4);     /* int32 */
    return put_tag(b, 0xd3, (uint64_t)v, 8);                   /* int64 */
}

/* a Python int (or int subclass, e.g. an IntEnum; not bool) in [-2**63, 2**64) */
static int
pack_pyint(Buf *b, PyObject *o)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
        if (v == -1 && PyErr_Occurred())
            return -1;
        return pack_i64(b, v);
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(o);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return -1;  /* >= 2**64: the Python encoder raises */
        return put_tag(b, 0xcf, u, 8);
    }
    return -1;  /* < -2**63 */
}

static int
pack_double(Buf *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return put_tag(b, 0xcb, u, 8);  /* float64 */
}

static int
pack_str(Buf *b, PyObject *o)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);  /* strict utf-8: surrogates fail */
    int r;
    if (s == NULL)
        return -1;
    if (n < 32)
        r = put_tag(b, (unsigned char)(0xa0 | n), 0, 0);  /* fixstr */
    else if (n < 256)
        r = put_tag(b, 0xd9, (uint64_t)n, 1);             /* str8 */
    else if (n < 65536)
        r = put_tag(b, 0xda, (uint64_t)n, 2);             /* str16 */
    else if ((unsigned long long)n <= U32_MAX)
        r = put_tag(b, 0xdb, (uint64_t)n, 4);             /* str32 */
    else
        return -1;
    return r < 0 ? -1 : put(b, s, n);
}

static int
pack_bin(Buf *b, const char *s, Py_ssize_t n)
{
    int r;
    if (n < 256)
        r = put_tag(b, 0xc4, (uint64_t)n, 1);  /* bin8 */
    else if (n < 65536)
        r = put_tag(b, 0xc5, (uint64_t)n, 2);  /* bin16 */
    else if ((unsigned long long)n <= U32_MAX)
        r = put_tag(b, 0xc6, (uint64_t)n, 4);  /* bin32 */
    else
        return -1;
    return r < 0 ? -1 : put(b, s, n);
}

/* header of an array (0x90 | n fixarray, 0xdc array16, 0xdd array32) or a map (0x80 | n, 0xde, 0xdf) */
static int
pack_container(Buf *b, Py_ssize_t n, unsigned char fix, unsigned char t16)
{
    if (n < 16)
        return put_tag(b, (unsigned char)(fix | n), 0, 0);
    if (n < 65536)
        return put_tag(b, t16, (uint64_t)n, 2);
    if ((unsigned long long)n <= U32_MAX)
        return put_tag(b, (unsigned char)(t16 + 1), (uint64_t)n, 4);
    return -1;
}

/* bool, int, float, str, bytes, bytearray (in msgpack's order of checks) */
static int
pack_scalar(Buf *b, PyObject *o)
{
    if (o == Py_True)
        return put_tag(b, 0xc3, 0, 0);
    if (o == Py_False)
        return put_tag(b, 0xc2, 0, 0);
    if (PyLong_Check(o))
        return PyBool_Check(o) ? -1 : pack_pyint(b, o);
    if (PyFloat_Check(o))  /* numpy.float64 is a float subclass: packed as float64 too */
        return pack_double(b, PyFloat_AS_DOUBLE(o));
    if (PyBytes_Check(o))
        return pack_bin(b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
    if (PyByteArray_Check(o))
        return pack_bin(b, PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o));
    if (PyUnicode_Check(o))
        return pack_str(b, o);
    return -1;
}

/* ext code of a dtype: 1 (float kinds), 2 (int, uint, bool kinds), 0 (not handled here) */
static long
ext_code(PyObject *dtype)
{
    PyObject *got = PyDict_GetItemWithError(g_ext_cache, dtype), *kind, *code;
    long c = 0;
    if (got != NULL)
        return PyLong_AsLong(got);
    if (PyErr_Occurred())
        return -1;
    kind = PyObject_GetAttr(dtype, s_kind);
    if (kind == NULL)
        return -1;
    if (PyUnicode_Check(kind) && PyUnicode_GET_LENGTH(kind) == 1) {
        Py_UCS4 k = PyUnicode_READ_CHAR(kind, 0);
        c = k == 'f' ? EXT_F32 : (k == 'i' || k == 'u' || k == 'b') ? EXT_I64 : 0;
    }
    Py_DECREF(kind);
    if (PyDict_GET_SIZE(g_ext_cache) >= 256)
        PyDict_Clear(g_ext_cache);
    code = PyLong_FromLong(c);
    if (code == NULL || PyDict_SetItem(g_ext_cache, dtype, code) < 0) {
        Py_XDECREF(code);
        return -1;
    }
    Py_DECREF(code);
    return c;
}

/* ext header + ext data (uint8 ndim, ndim x uint32 LE shape, element bytes) */
static int
pack_ext(Buf *b, long code, Py_ssize_t ndim, const Py_ssize_t *shape, const char *data, Py_ssize_t n)
{
    unsigned long long len = 1 + 4 * (unsigned long long)ndim + (unsigned long long)n;
    unsigned char *q;
    int r;
    switch (len) {
    case 1: r = put_tag(b, 0xd4, 0, 0); break;   /* fixext1 */
    case 2: r = put_tag(b, 0xd5, 0, 0); break;   /* fixext2 */
    case 4: r = put_tag(b, 0xd6, 0, 0); break;   /* fixext4 */
    case 8: r = put_tag(b, 0xd7, 0, 0); break;   /* fixext8 */
    case 16: r = put_tag(b, 0xd8, 0, 0); break;  /* fixext16 */
    default:
        if (len < 256)
            r = put_tag(b, 0xc7, len, 1);        /* ext8 */
        else if (len < 65536)
            r = put_tag(b, 0xc8, len, 2);        /* ext16 */
        else if (len <= U32_MAX)
            r = put_tag(b, 0xc9, len, 4);        /* ext32 */
        else
            return -1;
    }
    if (r < 0 || RESERVE(b, 2 + 4 * ndim) < 0)
        return -1;
    q = (unsigned char *)b->p + b->len;
    q[0] = (unsigned char)code;   /* ext type */
    q[1] = (unsigned char)ndim;
    for (Py_ssize_t i = 0; i < ndim; i++) {
        uint32_t d = (uint32_t)shape[i];
        for (int j = 0; j < 4; j++, d >>= 8)
            q[2 + 4 * i + j] = (unsigned char)(d & 0xFF);
    }
    b->len += 2 + 4 * ndim;
    return put(b, data, n);
}

static int
shape_ok(Py_ssize_t ndim, const Py_ssize_t *shape)
{
    if (ndim > MAX_NDIM)
        return 0;
    for (Py_ssize_t i = 0; i < ndim; i++)
        if (shape[i] < 0 || (unsigned long long)shape[i] > U32_MAX)
            return 0;
    return 1;
}

/* the shape tuple of an array (slow path: arrays that are not C-contiguous) */
static int
shape_of(PyObject *arr, Py_ssize_t *ndim, Py_ssize_t *shape)
{
    PyObject *t = PyObject_GetAttr(arr, s_shape);
    int ok = t != NULL && PyTuple_Check(t) && PyTuple_GET_SIZE(t) <= MAX_NDIM;
    if (ok) {
        *ndim = PyTuple_GET_SIZE(t);
        for (Py_ssize_t i = 0; i < *ndim; i++) {
            shape[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, i));
            if (shape[i] == -1 && PyErr_Occurred())
                ok = 0;
        }
    }
    Py_XDECREF(t);
    return ok ? 0 : -1;
}

/* arr.astype(wire, copy=False) as C-order bytes: a contiguous buffer, else .tobytes() */
static int
pack_converted(Buf *b, long code, PyObject *orig, PyObject *conv)
{
    Py_buffer view;
    PyObject *raw;
    Py_ssize_t ndim, shape[MAX_NDIM];
    int r = -1;
    if (PyObject_GetBuffer(conv, &view, PyBUF_C_CONTIGUOUS) == 0) {
        if (shape_ok(view.ndim, view.shape))
            r = pack_ext(b, code, view.ndim, view.shape, view.buf, view.len);
        PyBuffer_Release(&view);
        return r;
    }
    PyErr_Clear();
    if (shape_of(orig, &ndim, shape) < 0 || !shape_ok(ndim, shape))
        return -1;
    raw = PyObject_CallMethodNoArgs(conv, s_tobytes);
    if (raw == NULL)
        return -1;
    if (PyBytes_Check(raw))
        r = pack_ext(b, code, ndim, shape, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw));
    Py_DECREF(raw);
    return r;
}

static int
pack_ndarray(Buf *b, PyObject *arr)
{
    PyObject *dtype = PyObject_GetAttr(arr, s_dtype), *conv;
    PyObject *args[3];
    long code;
    int r;
    if (dtype == NULL)
        return -1;
    code = ext_code(dtype);
    Py_DECREF(dtype);
    if (code != EXT_F32 && code != EXT_I64)
        return -1;
    args[0] = arr;
    args[1] = code == EXT_F32 ? g_f32 : g_i64;
    args[2] = Py_False;  /* copy=False */
    conv = PyObject_VectorcallMethod(s_astype, args, 2, s_copy_kw);
    if (conv == NULL)
        return -1;
    r = pack_converted(b, code, arr, conv);
    Py_DECREF(conv);
    return r;
}

/* a payload value: scalar, exact list/tuple of scalars, exact numpy.ndarray */
static int
pack_value(Buf *b, PyObject *o)
{
    if (PyList_CheckExact(o) || PyTuple_CheckExact(o)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        PyObject **items = PySequence_Fast_ITEMS(o);
        if (pack_container(b, n, 0x90, 0xdc) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)  /* scalars run no Python code: the list cannot change */
            if (pack_scalar(b, items[i]) < 0)
                return -1;
        return 0;
    }
    if (Py_TYPE(o) == (PyTypeObject *)g_ndarray)
        return pack_ndarray(b, o);
    return pack_scalar(b, o);
}

/* the payload: an exact dict with str keys */
static int
pack_payload(Buf *b, PyObject *payload)
{
    Py_ssize_t pos = 0, n = PyDict_GET_SIZE(payload), done = 0;
    PyObject *key, *value;
    int r = 0;
    if (pack_container(b, n, 0x80, 0xde) < 0)
        return -1;
    while (r == 0 && PyDict_Next(payload, &pos, &key, &value)) {
        if (!PyUnicode_Check(key))
            return -1;
        Py_INCREF(key);
        Py_INCREF(value);  /* astype() runs Python code: hold what we use */
        r = pack_str(b, key) < 0 || pack_value(b, value) < 0 ? -1 : 0;
        Py_DECREF(key);
        Py_DECREF(value);
        done++;
    }
    /* a dict changed while we packed it: let the Python encoder deal with it */
    return r < 0 || done != n || PyDict_GET_SIZE(payload) != n ? -1 : 0;
}

static int
pack_header_int(Buf *b, PyObject *o)
{
    return PyLong_Check(o) && !PyBool_Check(o) ? pack_pyint(b, o) : -1;
}

static int
pack_frame(Buf *b, PyObject *const *a)
{
    /* a: version, kind, run_id, sender, receiver, iteration, seq, t_send_ns, payload */
    if (put_tag(b, 0x90 | WIRE_LEN, 0, 0) < 0)  /* fixarray of 9 */
        return -1;
    if (pack_header_int(b, a[0]) < 0 || pack_header_int(b, a[1]) < 0)
        return -1;
    if (!PyUnicode_Check(a[2]) || pack_str(b, a[2]) < 0)
        return -1;
    for (int i = 3; i < 8; i++)
        if (pack_header_int(b, a[i]) < 0)
            return -1;
    if (!PyDict_CheckExact(a[8]))
        return -1;
    return pack_payload(b, a[8]);
}

static PyObject *
c_encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Buf b;
    PyObject *out = NULL;
    if (nargs != WIRE_LEN) {
        PyErr_SetString(PyExc_TypeError, "encode() takes 9 arguments");
        return NULL;
    }
    if (g_ndarray == NULL)
        Py_RETURN_NONE;
    b.p = b.small;
    b.len = 0;
    b.cap = sizeof(b.small);
    if (pack_frame(&b, args) == 0)
        out = PyBytes_FromStringAndSize(b.p, b.len);
    if (b.p != b.small)
        PyMem_Free(b.p);
    return out != NULL ? out : fall_back();
}

/* ================================== decoder ================================== */

typedef struct {
    const unsigned char *p, *end, *base;
    PyObject *src;  /* the input when it is bytes (arrays view it: zero copy), else NULL */
    Py_ssize_t max_str, max_list, max_fields;
} Dec;

/* a msgpack int of the header, as a C value: u when is_u (uint64 > 2**63 - 1), else s */
typedef struct {
    long long s;
    unsigned long long u;
    int is_u;
} Int;

static int
need(Dec *d, Py_ssize_t n)
{
    return n >= 0 && d->end - d->p >= n;
}

/* n-byte big-endian unsigned number at the cursor (n = 1, 2, 4, 8); the caller checked need() */
static uint64_t
be(Dec *d, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | d->p[i];
    d->p += n;
    return v;
}

/* length after a str/bin/array/map tag of width n bytes, or -1 when truncated */
static Py_ssize_t
rd_len(Dec *d, int n)
{
    if (!need(d, n))
        return -1;
    return (Py_ssize_t)be(d, n);
}

/* an int of any msgpack format at the cursor; -1 if it is not an int (or truncated) */
static int
rd_int(Dec *d, Int *v)
{
    unsigned char t;
    static const int width[] = {1, 2, 4, 8};  /* 0xcc-0xcf uint8-64, 0xd0-0xd3 int8-64 */
    uint64_t raw;
    int w;
    if (!need(d, 1))
        return -1;
    t = *d->p++;
    v->is_u = 0;
    if (t <= 0x7f || t >= 0xe0) {  /* positive / negative fixint */
        v->s = (signed char)t;
        if (t <= 0x7f)
            v->s = t;
        return 0;
    }
    if (t < 0xcc || t > 0xd3)
        return -1;
    w = width[(t - 0xcc) & 3];
    if (!need(d, w))
        return -1;
    raw = be(d, w);
    if (t <= 0xcf) {  /* unsigned */
        if (raw > (uint64_t)LLONG_MAX) {
            v->is_u = 1;
            v->u = raw;
        }
        else {
            v->s = (long long)raw;
        }
    }
    else {  /* signed: sign-extend from w bytes */
        v->s = w == 1 ? (int8_t)raw : w == 2 ? (int16_t)raw : w == 4 ? (int32_t)raw : (int64_t)raw;
    }
    return 0;
}

static PyObject *
int_obj(const Int *v)
{
    return v->is_u ? PyLong_FromUnsignedLongLong(v->u) : PyLong_FromLongLong(v->s);
}

/* str length after the tag t (fixstr 0xa0-0xbf, str8 0xd9, str16 0xda, str32 0xdb); -1 if not a str */
static Py_ssize_t
str_len(Dec *d, unsigned char t)
{
    if ((t & 0xe0) == 0xa0)
        return t & 0x1f;
    if (t >= 0xd9 && t <= 0xdb)
        return rd_len(d, 1 << (t - 0xd9));
    return -1;
}

static PyObject *
dec_utf8(Dec *d, Py_ssize_t n)
{
    PyObject *s;
    if (n < 0 || n > d->max_str || !need(d, n))
        return NULL;
    s = PyUnicode_DecodeUTF8((const char *)d->p, n, NULL);  /* strict, as msgpack's raw=False */
    d->p += n;
    return s;
}

static PyObject *
dec_str(Dec *d)
{
    if (!need(d, 1))
        return NULL;
    d->p++;
    return dec_utf8(d, str_len(d, d->p[-1]));
}

static PyObject *
dec_float(Dec *d, unsigned char t)
{
    if (t == 0xca) {  /* float32 */
        union { uint32_t i; float f; } m;
        if (!need(d, 4))
            return NULL;
        m.i = (uint32_t)be(d, 4);
        return PyFloat_FromDouble((double)m.f);
    }
    else {  /* 0xcb float64 */
        union { uint64_t i; double f; } m;
        if (!need(d, 8))
            return NULL;
        m.i = be(d, 8);
        return PyFloat_FromDouble(m.f);
    }
}

/* a scalar: int, float, bool, str, bin; NULL for anything else (nil, containers, ext) */
static PyObject *
dec_scalar(Dec *d)
{
    unsigned char t;
    Py_ssize_t n;
    PyObject *o;
    Int v;
    if (!need(d, 1))
        return NULL;
    t = *d->p;
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3))
        return rd_int(d, &v) < 0 ? NULL : int_obj(&v);
    d->p++;
    if (t == 0xc2 || t == 0xc3)  /* false / true */
        return Py_NewRef(t == 0xc3 ? Py_True : Py_False);
    if (t == 0xca || t == 0xcb)
        return dec_float(d, t);
    if (t >= 0xc4 && t <= 0xc6) {  /* bin8 / bin16 / bin32 */
        n = rd_len(d, 1 << (t - 0xc4));
        if (n < 0 || n > d->max_str || !need(d, n))
            return NULL;
        o = PyBytes_FromStringAndSize((const char *)d->p, n);
        d->p += n;
        return o;
    }
    return dec_utf8(d, str_len(d, t));  /* NULL when t is not a str tag */
}

/* number of elements of an array array with shape (product, capped): -1 when above cap */
static Py_ssize_t
elem_count(const unsigned char *shape_le, int ndim, Py_ssize_t cap)
{
    Py_ssize_t dims[MAX_NDIM], count = 1;
    for (int i = 0; i < ndim; i++) {
        const unsigned char *q = shape_le + 4 * i;
        dims[i] = (Py_ssize_t)((uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24);
        if (dims[i] == 0)
            return 0;
    }
    for (int i = 0; i < ndim; i++) {
        if (dims[i] > cap / count)
            return -1;
        count *= dims[i];
    }
    return count;
}

static PyObject *
shape_tuple(const unsigned char *shape_le, int ndim)
{
    PyObject *t = PyTuple_New(ndim);
    for (int i = 0; t != NULL && i < ndim; i++) {
        const unsigned char *q = shape_le + 4 * i;
        uint32_t dim = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
        PyObject *o = PyLong_FromUnsignedLong(dim);
        if (o == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, i, o);
    }
    return t;
}

/* np.frombuffer(buf, dtype, count, offset), reshaped when ndim != 1 (as codec._ext_hook) */
static PyObject *
make_array(Dec *d, PyObject *dtype, const unsigned char *data, Py_ssize_t n, int ndim, Py_ssize_t count)
{
    Py_ssize_t hdr = 1 + 4 * ndim;
    PyObject *buf, *cnt, *off, *arr, *shape, *args[4];
    if (d->src != NULL) {  /* immutable bytes input: view it */
        buf = Py_NewRef(d->src);
        hdr += data - d->base;
    }
    else {  /* other buffers may change later: copy the ext data */
        buf = PyBytes_FromStringAndSize((const char *)data, n);
    }
    cnt = PyLong_FromSsize_t(count);
    off = PyLong_FromSsize_t(hdr);
    arr = NULL;
    if (buf != NULL && cnt != NULL && off != NULL) {
        args[0] = buf, args[1] = dtype, args[2] = cnt, args[3] = off;
        arr = PyObject_Vectorcall(g_frombuffer, args, 4, NULL);
    }
    Py_XDECREF(buf);
    Py_XDECREF(cnt);
    Py_XDECREF(off);
    if (arr == NULL || ndim == 1)
        return arr;
    shape = shape_tuple(data + 1, ndim);
    if (shape == NULL) {
        Py_DECREF(arr);
        return NULL;
    }
    args[0] = arr, args[1] = shape;
    buf = PyObject_VectorcallMethod(s_reshape, args, 2, NULL);
    Py_DECREF(arr);
    Py_DECREF(shape);
    return buf;
}

/* an ext value (tag already read): code 1 or 2, validated exactly as codec._ext_hook */
static PyObject *
dec_ext(Dec *d, unsigned char t)
{
    Py_ssize_t n, count, itemsize;
    const unsigned char *data;
    int code, ndim;
    PyObject *dtype;
    if (t >= 0xd4 && t <= 0xd8)  /* fixext 1 / 2 / 4 / 8 / 16 */
        n = (Py_ssize_t)1 << (t - 0xd4);
    else  /* ext8 0xc7 / ext16 0xc8 / ext32 0xc9 */
        n = rd_len(d, 1 << (t - 0xc7));
    if (n < 0 || !need(d, 1 + n))
        return NULL;
    code = (signed char)*d->p++;
    data = d->p;
    d->p += n;
    if (code == EXT_F32)
        dtype = g_f32, itemsize = 4;
    else if (code == EXT_I64)
        dtype = g_i64, itemsize = 8;
    else
        return NULL;
    if (n < 1 || data[0] > MAX_NDIM)
        return NULL;
    ndim = data[0];
    if (n < 1 + 4 * ndim)
        return NULL;
    count = elem_count(data + 1, ndim, (n - 1 - 4 * ndim) / itemsize);
    if (count < 0 || count * itemsize != n - 1 - 4 * ndim)
        return NULL;
    return make_array(d, dtype, data, n, ndim, count);
}

static int
is_ext(unsigned char t)
{
    return (t >= 0xd4 && t <= 0xd8) || (t >= 0xc7 && t <= 0xc9);
}

/* array length after tag t (fixarray 0x90-0x9f, array16 0xdc, array32 0xdd); -1 if not an array */
static Py_ssize_t
array_len(Dec *d, unsigned char t)
{
    if ((t & 0xf0) == 0x90)
        return t & 0x0f;
    if (t == 0xdc || t == 0xdd)
        return rd_len(d, t == 0xdc ? 2 : 4);
    return -1;
}

/* a payload value: scalar, flat list of scalars, or ext array */
static PyObject *
dec_value(Dec *d)
{
    unsigned char t;
    Py_ssize_t n;
    PyObject *list;
    if (!need(d, 1))
        return NULL;
    t = *d->p;
    if (is_ext(t)) {
        d->p++;
        return dec_ext(d, t);
    }
    if ((t & 0xf0) != 0x90 && t != 0xdc && t != 0xdd)
        return dec_scalar(d);
    d->p++;
    n = array_len(d, t);
    /* each element takes at least one byte: a claimed length beyond the input is truncation */
    if (n < 0 || n > d->max_list || !need(d, n))
        return NULL;
    list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *item = dec_scalar(d);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* the payload map: str keys (no duplicates), at most max_fields entries */
static PyObject *
dec_payload(Dec *d)
{
    unsigned char t;
    Py_ssize_t n;
    PyObject *dict;
    if (!need(d, 1))
        return NULL;
    t = *d->p++;
    if ((t & 0xf0) == 0x80)  /* fixmap */
        n = t & 0x0f;
    else if (t == 0xde || t == 0xdf)  /* map16 / map32 */
        n = rd_len(d, t == 0xde ? 2 : 4);
    else
        return NULL;
    if (n < 0 || n > d->max_fields || !need(d, 2 * n))
        return NULL;
    dict = PyDict_New();
    for (Py_ssize_t i = 0; dict != NULL && i < n; i++) {
        PyObject *key = dec_str(d), *value = key != NULL ? dec_value(d) : NULL;
        if (value == NULL || PyDict_SetItem(dict, key, value) < 0 || PyDict_GET_SIZE(dict) != i + 1)
            Py_CLEAR(dict);  /* also on a duplicate key */
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return dict;
}

/* the header ints checked as codec._py_decode checks them */
static int
header_ints_ok(const Int *h)
{
    /* h: sender, receiver, iteration, seq, t_send_ns; COORDINATOR = -2, BROADCAST = -1 */
    if (!h[0].is_u && (h[0].s < -2 || h[0].s == -1))
        return 0;
    if (!h[1].is_u && h[1].s < -2)
        return 0;
    for (int i = 2; i < 5; i++)
        if (!h[i].is_u && h[i].s < 0)
            return 0;
    return 1;
}

/* the nine fields, then the Envelope (tuple.__new__(Envelope, (kind, sender, receiver, iteration,
 * seq, payload, run_id, t_send_ns, version))) */
static PyObject *
dec_frame(Dec *d, Py_ssize_t max_run_id)
{
    Int version, kind, h[5];
    PyObject *kind_member, *run_id, *payload, *env, *ints[5];
    PyTypeObject *tp = (PyTypeObject *)g_envelope;
    Py_ssize_t n;
    int i, ok;
    if (!need(d, 1))
        return NULL;
    d->p++;
    n = array_len(d, d->p[-1]);
    if (n != WIRE_LEN || rd_int(d, &version) < 0 || version.is_u || version.s != 1)
        return NULL;  /* SCHEMA_VERSION */
    if (rd_int(d, &kind) < 0 || kind.is_u || kind.s < 0 || kind.s >= PyTuple_GET_SIZE(g_kinds))
        return NULL;
    kind_member = PyTuple_GET_ITEM(g_kinds, (Py_ssize_t)kind.s);
    if (kind_member == Py_None)
        return NULL;
    run_id = dec_str(d);
    if (run_id == NULL)
        return NULL;
    ok = PyUnicode_GET_LENGTH(run_id) <= max_run_id;
    for (i = 0; ok && i < 5; i++)
        ok = rd_int(d, &h[i]) == 0;
    payload = ok && header_ints_ok(h) ? dec_payload(d) : NULL;
    if (payload == NULL || d->p != d->end) {  /* trailing bytes: not canonical */
        Py_DECREF(run_id);
        Py_XDECREF(payload);
        return NULL;
    }
    for (i = 0, ok = 1; i < 5; i++)
        ok = (ints[i] = int_obj(&h[i])) != NULL && ok;
    env = ok ? tp->tp_alloc(tp, WIRE_LEN) : NULL;
    if (env == NULL) {
        for (i = 0; i < 5; i++)
            Py_XDECREF(ints[i]);
        Py_DECREF(run_id);
        Py_DECREF(payload);
        return NULL;
    }
    PyTuple_SET_ITEM(env, 0, Py_NewRef(kind_member));
    for (i = 0; i < 4; i++)
        PyTuple_SET_ITEM(env, 1 + i, ints[i]);  /* sender, receiver, iteration, seq */
    PyTuple_SET_ITEM(env, 5, payload);
    PyTuple_SET_ITEM(env, 6, run_id);
    PyTuple_SET_ITEM(env, 7, ints[4]);           /* t_send_ns */
    PyTuple_SET_ITEM(env, 8, PyLong_FromLong(1));  /* version: a cached small int, cannot fail */
    return env;
}

static Py_ssize_t
limit_at(PyObject *limits, Py_ssize_t i)
{
    Py_ssize_t v = PyLong_AsSsize_t(PyTuple_GET_ITEM(limits, i));
    if (v == -1 && PyErr_Occurred()) {  /* a limit beyond Py_ssize_t: no limit */
        PyErr_Clear();
        return PY_SSIZE_T_MAX;
    }
    return v;
}

static PyObject *
c_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *data, *limits, *env;
    Py_buffer view;
    Dec d;
    if (nargs != 2 || !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != 5) {
        PyErr_SetString(PyExc_TypeError, "decode(data, limits) with limits a 5-tuple");
        return NULL;
    }
    if (g_envelope == NULL)
        Py_RETURN_NONE;
    data = args[0];
    limits = args[1];
    if (PyBytes_Check(data)) {
        d.src = data;
        view.obj = NULL;
        view.buf = PyBytes_AS_STRING(data);
        view.len = PyBytes_GET_SIZE(data);
    }
    else {
        d.src = NULL;
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
            return fall_back();
    }
    d.base = d.p = (const unsigned char *)view.buf;
    d.end = d.p + view.len;
    d.max_str = limit_at(limits, 1);
    d.max_list = limit_at(limits, 2);
    d.max_fields = limit_at(limits, 3);
    env = view.len <= limit_at(limits, 0) ? dec_frame(&d, limit_at(limits, 4)) : NULL;
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return env != NULL ? env : fall_back();
}

/* ================================== module ================================== */

static PyObject *
c_setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject **slots[] = {&g_envelope, &g_kinds, &g_ndarray, &g_frombuffer, &g_f32, &g_i64};
    if (nargs != 6 || !PyType_Check(args[0]) || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)
        || !PyTuple_Check(args[1]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup(envelope_type, kinds, ndarray_type, frombuffer, f32_dtype, i64_dtype)");
        return NULL;
    }
    for (int i = 0; i < 6; i++)
        Py_XSETREF(*slots[i], Py_NewRef(args[i]));
    PyDict_Clear(g_ext_cache);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))c_encode, METH_FASTCALL,
     "encode(version, kind, run_id, sender, receiver, iteration, seq, t_send_ns, payload) -> bytes | None"},
    {"decode", (PyCFunction)(void (*)(void))c_decode, METH_FASTCALL,
     "decode(data, (max_message_bytes, max_str_bytes, max_list_len, max_fields, max_run_id)) -> Envelope | None"},
    {"setup", (PyCFunction)(void (*)(void))c_setup, METH_FASTCALL,
     "setup(envelope_type, kinds, ndarray_type, frombuffer, f32_dtype, i64_dtype)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "protocol._ccodec",
    "Compiled fast path of protocol.codec (returns None where the pure-Python codec must decide).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__ccodec(void)
{
    PyObject **names[] = {&s_astype, &s_tobytes, &s_shape, &s_reshape, &s_dtype, &s_kind};
    const char *texts[] = {"astype", "tobytes", "shape", "reshape", "dtype", "kind"};
    for (int i = 0; i < 6; i++)
        if ((*names[i] = PyUnicode_InternFromString(texts[i])) == NULL)
            return NULL;
    s_copy_kw = Py_BuildValue("(s)", "copy");
    g_ext_cache = PyDict_New();
    if (s_copy_kw == NULL || g_ext_cache == NULL)
        return NULL;
    return PyModule_Create(&module);
}
