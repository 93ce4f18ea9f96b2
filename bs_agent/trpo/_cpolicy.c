/* bs_agent.trpo._cpolicy: compiled fast path of bs_agent/trpo/lean.py (one slot's policy mean).
 *
 * mean(params, dims, x, out) -> None
 *     The deterministic action of an ELU MLP for one state, clipped to [0, 1]:
 *         h_0 = x,  h_i = ELU(W_i h_{i-1} + b_i),  out = clip(W_o h + b_o, 0, 1)
 *     params  float32 buffer: per layer its weight TRANSPOSED, [n_in, n_out] row-major, then its bias [n_out]
 *     dims    int32 buffer [n_layers + 1]: n_0 = len(x), n_1, ..., n_out = len(out); every n_i <= MAX_WIDTH
 *     x       float32 buffer [n_0];  out  writable float32 buffer [n_out]
 *     Raises ValueError on sizes that do not match (checked every call: a few comparisons).
 *
 * token(p_in, d_in, p, decided, last_p, last_d, state, p_index, flag_index) -> bool
 *     A round-robin BS taking its predecessor's power vector (lean.SlotState.set_powers, paper's message):
 *     True if ``p_in`` is a 1-D float32 array of L = len(p) finite values and ``d_in`` a 1-D int64 array of
 *     B = len(decided) values; then p = last_p = p_in, decided = last_d = float(d_in), and the state's powers
 *     and flags (state[L:2L] = p[p_index], state[-B:] = decided[flag_index]). False, with nothing written,
 *     for anything else (the caller then runs the Python check, which counts it). p, decided, last_p, last_d,
 *     state: float32 writable; p_index [L], flag_index [B]: int64 indices, checked against L and B.
 *
 * csi(gains, p_index, mean_db, std_db, state) -> bool
 *     A BS taking its local CSI of a slot (lean.SlotState.set_csi, state.GainNorm): True if ``gains`` is a 1-D
 *     float64 array of L = len(p_index) values; then state[j] = (float)((10 log10(max(gains[p_index[j]], 1e-300))
 *     - mean_db) / std_db) for j < L, in double as numpy computes it, then rounded to float32. False, with
 *     nothing written, for anything else (the caller then runs numpy). state: float32 writable, >= L; p_index
 *     int64 indices in [0, L). numpy's log10 and the C library's may differ in the last bit of a double, so the
 *     state equals numpy's to a float32 ulp (tested).
 *
 * The layer is computed as h = b + sum_i x_i W[i, :] (axpy over the transposed weight, four inputs at a time)
 * so that the compiler vectorises it without reassociating a reduction; the sum's order differs from BLAS's
 * dot products, so results equal numpy's to float32 rounding (tested). Built for AVX2+FMA and for the
 * baseline ISA; the loader picks at run time (GCC/Clang target_clones, where supported).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_WIDTH 4096
#define MAX_LAYERS 16

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2,fma", "default")))
#else
#define CLONES
#endif

CLONES static void
affine(const float *restrict wt, const float *restrict b, const float *restrict x, float *restrict h,
       Py_ssize_t n_in, Py_ssize_t n_out)
{
    Py_ssize_t i = 0, o;
    for (o = 0; o < n_out; o++)
        h[o] = b[o];
    for (; i + 4 <= n_in; i += 4) {
        const float *w0 = wt + i * n_out, *w1 = w0 + n_out, *w2 = w1 + n_out, *w3 = w2 + n_out;
        const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        for (o = 0; o < n_out; o++)
            h[o] += w0[o] * x0 + w1[o] * x1 + w2[o] * x2 + w3[o] * x3;
    }
    for (; i < n_in; i++) {
        const float *w = wt + i * n_out;
        const float xi = x[i];
        for (o = 0; o < n_out; o++)
            h[o] += w[o] * xi;
    }
}

static PyObject *
mean(PyObject *self, PyObject *args)
{
    Py_buffer p, d, xb, ob;
    float bufs[2][MAX_WIDTH];
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &p, &d, &xb, &ob))
        return NULL;
    PyObject *ret = NULL;
    const int32_t *dims = (const int32_t *)d.buf;
    Py_ssize_t n_layers = d.len / 4 - 1, need = 0, l;
    if (d.len % 4 || n_layers < 1 || n_layers > MAX_LAYERS) {
        PyErr_SetString(PyExc_ValueError, "dims: expected int32 [2..17]");
        goto done;
    }
    for (l = 0; l <= n_layers; l++)
        if (dims[l] < 1 || dims[l] > MAX_WIDTH) {
            PyErr_SetString(PyExc_ValueError, "dims: every width in [1, 4096]");
            goto done;
        }
    for (l = 0; l < n_layers; l++)
        need += (Py_ssize_t)dims[l] * dims[l + 1] + dims[l + 1];
    if (p.len != need * 4 || xb.len != dims[0] * 4 || ob.len != dims[n_layers] * 4) {
        PyErr_SetString(PyExc_ValueError, "params, x or out: sizes do not match dims (float32)");
        goto done;
    }
    {
        const float *w = (const float *)p.buf, *x = (const float *)xb.buf;
        for (l = 0; l < n_layers; l++) {
            Py_ssize_t n_in = dims[l], n_out = dims[l + 1];
            float *h = (l == n_layers - 1) ? (float *)ob.buf : bufs[l & 1];
            affine(w, w + n_in * n_out, x, h, n_in, n_out);
            w += n_in * n_out + n_out;
            if (l < n_layers - 1) {
                for (Py_ssize_t o = 0; o < n_out; o++)      /* ELU, eq. (24) */
                    if (h[o] < 0.0f)
                        h[o] = expm1f(h[o]);
            } else {
                for (Py_ssize_t o = 0; o < n_out; o++)      /* p / Pmax = clip(mu, 0, 1); NaN stays NaN */
                    h[o] = h[o] < 0.0f ? 0.0f : (h[o] > 1.0f ? 1.0f : h[o]);
            }
            x = h;
        }
    }
    Py_INCREF(Py_None);
    ret = Py_None;
done:
    PyBuffer_Release(&p);
    PyBuffer_Release(&d);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&ob);
    return ret;
}

/* a 1-D array of n items of type code `code` (struct module letters), C-contiguous: 1 with `v` filled */
static int
get_vector(PyObject *obj, Py_buffer *v, const char *codes, Py_ssize_t itemsize, Py_ssize_t n, int writable)
{
    if (PyObject_GetBuffer(obj, v, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Clear();
        return 0;
    }
    const char *f = v->format ? v->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (v->ndim != 1 || v->itemsize != itemsize || f[0] == 0 || f[1] != 0 || !strchr(codes, f[0]) ||
        (n >= 0 && v->shape[0] != n)) {
        PyBuffer_Release(v);
        return 0;
    }
    return 1;
}

static PyObject *
token(PyObject *self, PyObject *args)
{
    PyObject *o[9];
    Py_buffer v[9];
    int own = 2, ok = 0;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8]))
        return NULL;
    /* this node's buffers (2..8): p and decided give L and B */
    Py_ssize_t L = -1, B = -1;
    for (; own < 9; own++) {
        const int idx = own >= 7;
        Py_ssize_t n = own == 2 || own == 6 ? -1 : own == 3 ? -1 : (own == 4 || own == 7) ? L : B;
        if (!get_vector(o[own], &v[own], idx ? "lq" : "f", idx ? 8 : 4, n, !idx))
            goto bad_own;
        if (own == 2)
            L = v[2].shape[0];
        if (own == 3)
            B = v[3].shape[0];
    }
    const int64_t *pi = (const int64_t *)v[7].buf, *fi = (const int64_t *)v[8].buf;
    Py_ssize_t n = v[6].shape[0];
    if (n < 2 * L + B)
        goto bad_own;
    for (Py_ssize_t j = 0; j < L; j++)
        if (pi[j] < 0 || pi[j] >= L)
            goto bad_own;
    for (Py_ssize_t j = 0; j < B; j++)
        if (fi[j] < 0 || fi[j] >= B)
            goto bad_own;
    /* the message: anything unexpected is "not taken here" (False, nothing written) */
    if (get_vector(o[0], &v[0], "f", 4, L, 0)) {
        if (get_vector(o[1], &v[1], "lq", 8, B, 0)) {
            const float *pin = (const float *)v[0].buf;
            const int64_t *din = (const int64_t *)v[1].buf;
            ok = 1;
            for (Py_ssize_t j = 0; j < L; j++)
                if (!isfinite(pin[j]))
                    ok = 0;
            if (ok) {
                float *p = (float *)v[2].buf, *dec = (float *)v[3].buf, *lp = (float *)v[4].buf;
                float *ld = (float *)v[5].buf, *st = (float *)v[6].buf;
                for (Py_ssize_t j = 0; j < L; j++)
                    p[j] = lp[j] = pin[j];
                for (Py_ssize_t j = 0; j < B; j++)
                    dec[j] = ld[j] = (float)din[j];
                for (Py_ssize_t j = 0; j < L; j++)
                    st[L + j] = p[pi[j]];
                for (Py_ssize_t j = 0; j < B; j++)
                    st[n - B + j] = dec[fi[j]];
            }
            PyBuffer_Release(&v[1]);
        }
        PyBuffer_Release(&v[0]);
    }
    for (int i = 2; i < 9; i++)
        PyBuffer_Release(&v[i]);
    return PyBool_FromLong(ok);
bad_own:
    for (int i = 2; i < own; i++)
        PyBuffer_Release(&v[i]);
    PyErr_SetString(PyExc_ValueError, "token: this node's buffers must be float32 (p [L], decided [B], last_p [L], "
                                      "last_d [B], state >= 2L+B) and int64 indices in range (p_index [L], "
                                      "flag_index [B])");
    return NULL;
}

static PyObject *
csi(PyObject *self, PyObject *args)
{
    PyObject *og, *oi, *os;
    double mean_db, std_db;
    Py_buffer g, pi, st;
    if (!PyArg_ParseTuple(args, "OOddO", &og, &oi, &mean_db, &std_db, &os))
        return NULL;
    if (!get_vector(oi, &pi, "lq", 8, -1, 0))
        goto bad;
    const Py_ssize_t L = pi.shape[0];
    if (!get_vector(os, &st, "f", 4, -1, 1)) {
        PyBuffer_Release(&pi);
        goto bad;
    }
    const int64_t *idx = (const int64_t *)pi.buf;
    int ok = st.shape[0] >= L;
    for (Py_ssize_t j = 0; ok && j < L; j++)
        ok = idx[j] >= 0 && idx[j] < L;
    if (!ok) {
        PyBuffer_Release(&st);
        PyBuffer_Release(&pi);
        goto bad;
    }
    if (get_vector(og, &g, "d", 8, L, 0)) {
        const double *x = (const double *)g.buf;
        float *out = (float *)st.buf;
        for (Py_ssize_t j = 0; j < L; j++) {
            const double v = x[idx[j]];
            const double db = 10.0 * log10(isnan(v) || v > 1e-300 ? v : 1e-300);   /* np.maximum keeps NaN */
            out[j] = (float)((db - mean_db) / std_db);
        }
        PyBuffer_Release(&g);
        ok = 1;
    } else {
        ok = 0;
    }
    PyBuffer_Release(&st);
    PyBuffer_Release(&pi);
    return PyBool_FromLong(ok);
bad:
    PyErr_SetString(PyExc_ValueError, "csi: this node's buffers must be int64 p_index [L] with indices in [0, L) "
                                      "and a writable float32 state of at least L values");
    return NULL;
}

static PyMethodDef methods[] = {
    {"mean", mean, METH_VARARGS, "mean(params, dims, x, out): one state's clipped policy mean (see module)."},
    {"token", token, METH_VARARGS, "token(p_in, d_in, p, decided, last_p, last_d, state, p_index, flag_index) "
                                   "-> bool: take a round-robin power vector (see module)."},
    {"csi", csi, METH_VARARGS, "csi(gains, p_index, mean_db, std_db, state) -> bool: take a slot's local CSI "
                               "into the state (see module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bs_agent.trpo._cpolicy", "Compiled one-slot policy mean (lean.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__cpolicy(void)
{
    return PyModule_Create(&module);
}
