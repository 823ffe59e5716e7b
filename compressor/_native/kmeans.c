/* DCZ's compiled 1-D k-means step: nearest-centroid labels and per-centroid sums in one pass.
 *
 * C99, buffer protocol only (no numpy C API). The Python side (compressor/kmeans_native.py) passes
 * arrays it made itself; this file still checks every length against the buffers it was given and
 * never reads or writes outside them. The loop runs without the GIL, so threads scale across cores.
 *
 * Exactness: the label of x is the number of midpoints m[j] with x > m[j], which is what the numpy
 * path computes (a sum of comparisons, or searchsorted(m, x, side="left") when m is sorted). A
 * binary search gives the same count only for sorted midpoints, so it is used only after checking
 * that they are (NaN fails the check); otherwise every midpoint is compared. Comparisons are done in
 * float when both sides are float32, else in double: identical results, since float -> double is exact.
 * Sums follow np.bincount: each value (times its weight, multiplied in the input's precision) is
 * added in double, element by element in input order, so the rounding is the same bit for bit.
 * Built with -ffp-contract=off so that no multiply-add is fused.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline)) /* keeps the chunk loop simple enough to vectorize */
#else
#define NOINLINE
#endif

#define CHUNK 512        /* values labelled at once: small enough to stay in L1 */
#define LINEAR_MAX 31    /* up to this many midpoints, compare with all of them (vectorizes) */

typedef struct {
    const void *x;       /* groups * n values, float32 or float64 */
    int x_double;
    const void *mids;    /* groups * (k - 1) midpoints, float32 or float64 */
    int mids_double;
    const float *weight; /* groups * n float32 weights, or NULL (all 1) */
    void *labels;        /* groups * n labels, width bytes each */
    int width;
    double *num, *den;   /* groups * k sums, or NULL */
    Py_ssize_t groups, n, k;
} Job;

static int sorted_f(const float *m, Py_ssize_t c) {
    for (Py_ssize_t j = 0; j + 1 < c; j++)
        if (!(m[j] <= m[j + 1])) return 0;
    return 1;
}

static int sorted_d(const double *m, Py_ssize_t c) {
    for (Py_ssize_t j = 0; j + 1 < c; j++)
        if (!(m[j] <= m[j + 1])) return 0;
    return 1;
}

/* cnt[i] += x[i] > mj over one whole chunk: a fixed-length loop the compiler vectorizes. */
static NOINLINE void above_ff(const float *restrict x, float mj, uint32_t *restrict cnt) {
    for (int i = 0; i < CHUNK; i++) cnt[i] += x[i] > mj ? 1u : 0u;
}

/* Counts of midpoints below each of `len` values, float32 on both sides. */
static void count_ff(const float *x, Py_ssize_t len, const float *m, Py_ssize_t c, int sorted, uint32_t *cnt) {
    if (!sorted || c <= LINEAR_MAX) {
        float pad[CHUNK];
        if (len < CHUNK) { /* a short last chunk: count on a padded copy, the padding's counts are unused */
            memset(pad, 0, sizeof pad);
            memcpy(pad, x, (size_t)len * sizeof(float));
            x = pad;
        }
        memset(cnt, 0, CHUNK * sizeof(uint32_t));
        for (Py_ssize_t j = 0; j < c; j++) above_ff(x, m[j], cnt);
        return;
    }
    for (Py_ssize_t i = 0; i < len; i++) { /* branch-free binary search (c > LINEAR_MAX >= 1) */
        const float v = x[i];
        const float *b = m;
        Py_ssize_t left = c;
        while (left > 1) {
            const Py_ssize_t half = left / 2;
            b = v > b[half] ? b + half : b;
            left -= half;
        }
        cnt[i] = (uint32_t)((b - m) + (v > b[0]));
    }
}

/* cnt[i] += x[i] > mj over one whole chunk: a fixed-length loop the compiler vectorizes. */
static NOINLINE void above_dd(const double *restrict x, double mj, uint32_t *restrict cnt) {
    for (int i = 0; i < CHUNK; i++) cnt[i] += x[i] > mj ? 1u : 0u;
}

/* The same in double (x already widened). */
static void count_dd(const double *x, Py_ssize_t len, const double *m, Py_ssize_t c, int sorted, uint32_t *cnt) {
    if (!sorted || c <= LINEAR_MAX) {
        double pad[CHUNK];
        if (len < CHUNK) { /* a short last chunk: count on a padded copy, the padding's counts are unused */
            memset(pad, 0, sizeof pad);
            memcpy(pad, x, (size_t)len * sizeof(double));
            x = pad;
        }
        memset(cnt, 0, CHUNK * sizeof(uint32_t));
        for (Py_ssize_t j = 0; j < c; j++) above_dd(x, m[j], cnt);
        return;
    }
    for (Py_ssize_t i = 0; i < len; i++) { /* branch-free binary search (c > LINEAR_MAX >= 1) */
        const double v = x[i];
        const double *b = m;
        Py_ssize_t left = c;
        while (left > 1) {
            const Py_ssize_t half = left / 2;
            b = v > b[half] ? b + half : b;
            left -= half;
        }
        cnt[i] = (uint32_t)((b - m) + (v > b[0]));
    }
}

static void store(void *labels, int width, Py_ssize_t at, const uint32_t *cnt, Py_ssize_t len) {
    if (width == 1) {
        uint8_t *out = (uint8_t *)labels + at;
        for (Py_ssize_t i = 0; i < len; i++) out[i] = (uint8_t)cnt[i];
    } else if (width == 2) {
        uint16_t *out = (uint16_t *)labels + at;
        for (Py_ssize_t i = 0; i < len; i++) out[i] = (uint16_t)cnt[i];
    } else {
        int64_t *out = (int64_t *)labels + at;
        for (Py_ssize_t i = 0; i < len; i++) out[i] = (int64_t)cnt[i];
    }
}

/* One group: labels, then (optionally) sums, chunk by chunk. `m` holds this group's k - 1 midpoints
 * widened to double when the comparison is in double (md), else points at the float32 ones (mf). */
static void run_group(const Job *job, Py_ssize_t g, const float *mf, const double *md, int sorted) {
    uint32_t cnt[CHUNK];
    double wide[CHUNK];
    const Py_ssize_t c = job->k - 1, base = g * job->n;
    double *num = job->num ? job->num + g * job->k : NULL;
    double *den = job->den ? job->den + g * job->k : NULL;
    for (Py_ssize_t at = 0; at < job->n; at += CHUNK) {
        const Py_ssize_t len = job->n - at < CHUNK ? job->n - at : CHUNK;
        const Py_ssize_t i0 = base + at;
        if (job->x_double) {
            const double *x = (const double *)job->x + i0;
            count_dd(x, len, md, c, sorted, cnt);
        } else if (md) {
            const float *x = (const float *)job->x + i0;
            for (Py_ssize_t i = 0; i < len; i++) wide[i] = (double)x[i];
            count_dd(wide, len, md, c, sorted, cnt);
        } else {
            count_ff((const float *)job->x + i0, len, mf, c, sorted, cnt);
        }
        store(job->labels, job->width, i0, cnt, len);
        if (!num) continue;
        const float *w = job->weight ? job->weight + i0 : NULL;
        if (job->x_double) {
            const double *x = (const double *)job->x + i0;
            for (Py_ssize_t i = 0; i < len; i++) {
                num[cnt[i]] += w ? x[i] * (double)w[i] : x[i];
                den[cnt[i]] += w ? (double)w[i] : 1.0;
            }
        } else {
            const float *x = (const float *)job->x + i0;
            for (Py_ssize_t i = 0; i < len; i++) {
                num[cnt[i]] += w ? (double)(x[i] * w[i]) : (double)x[i];
                den[cnt[i]] += w ? (double)w[i] : 1.0;
            }
        }
    }
}

/* Returns 0, or -1 when a scratch allocation failed. Called without the GIL. */
static int run(const Job *job) {
    const Py_ssize_t c = job->k - 1;
    const int in_double = job->x_double || job->mids_double;
    double *md = NULL;
    if (in_double && c > 0) {
        md = (double *)malloc((size_t)c * sizeof(double));
        if (!md) return -1;
    }
    if (job->num) {
        memset(job->num, 0, (size_t)(job->groups * job->k) * sizeof(double));
        memset(job->den, 0, (size_t)(job->groups * job->k) * sizeof(double));
    }
    for (Py_ssize_t g = 0; g < job->groups; g++) {
        const float *mf = NULL;
        int sorted;
        if (job->mids_double) {
            if (c > 0) memcpy(md, (const double *)job->mids + g * c, (size_t)c * sizeof(double));
            sorted = sorted_d(md, c);
        } else {
            mf = (const float *)job->mids + g * c;
            sorted = sorted_f(mf, c);
            if (md)
                for (Py_ssize_t j = 0; j < c; j++) md[j] = (double)mf[j];
        }
        run_group(job, g, mf, md, sorted);
    }
    free(md);
    return 0;
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous%s buffer", what, writable ? " writable" : "");
        return -1;
    }
    return 0;
}

static int check_len(const Py_buffer *view, Py_ssize_t count, Py_ssize_t item, const char *what) {
    if (count < 0 || (count > 0 && item > PY_SSIZE_T_MAX / count) || view->len != count * item) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd items of %zd bytes", what, view->len, count, item);
        return -1;
    }
    return 0;
}

/* label_sums(x, x_double, mids, mids_double, groups, n, k, labels, width, num, den, weight) -> None
 * x: groups*n values (float32, or float64 when x_double); mids: groups*(k-1) sorted midpoints per
 * group; labels: writable groups*n of `width` bytes (1, 2 or 8); num, den: writable float64 groups*k
 * (both None: labels only); weight: float32 groups*n or None. */
static PyObject *label_sums(PyObject *self, PyObject *args) {
    PyObject *x_o, *mids_o, *labels_o, *num_o, *den_o, *weight_o;
    int x_double, mids_double, width;
    Py_ssize_t groups, n, k;
    if (!PyArg_ParseTuple(args, "OpOpnnnOiOOO", &x_o, &x_double, &mids_o, &mids_double, &groups, &n, &k, &labels_o,
                          &width, &num_o, &den_o, &weight_o))
        return NULL;
    if (groups < 0 || n < 0 || k < 1 || (width != 1 && width != 2 && width != 8) ||
        (width < 8 && k - 1 >= ((Py_ssize_t)1 << (8 * width))) || k > ((Py_ssize_t)1 << 24) ||
        (groups > 0 && n > PY_SSIZE_T_MAX / groups) || (groups > 0 && k > PY_SSIZE_T_MAX / groups)) {
        PyErr_SetString(PyExc_ValueError, "label_sums: bad groups, n, k or label width");
        return NULL;
    }
    if ((num_o == Py_None) != (den_o == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "label_sums: num and den go together");
        return NULL;
    }
    Py_buffer x, mids, labels, num = {0}, den = {0}, weight = {0};
    int have_sums = num_o != Py_None, have_weight = weight_o != Py_None;
    PyObject *result = NULL;
    if (get_buffer(x_o, &x, 0, "x") < 0) return NULL;
    if (get_buffer(mids_o, &mids, 0, "mids") < 0) goto release_x;
    if (get_buffer(labels_o, &labels, 1, "labels") < 0) goto release_mids;
    if (have_sums && get_buffer(num_o, &num, 1, "num") < 0) goto release_labels;
    if (have_sums && get_buffer(den_o, &den, 1, "den") < 0) goto release_num;
    if (have_weight && get_buffer(weight_o, &weight, 0, "weight") < 0) goto release_den;
    const Py_ssize_t total = groups * n;
    if (check_len(&x, total, x_double ? 8 : 4, "x") < 0 || check_len(&mids, groups * (k - 1), mids_double ? 8 : 4, "mids") < 0 ||
        check_len(&labels, total, width, "labels") < 0 ||
        (have_sums && (check_len(&num, groups * k, 8, "num") < 0 || check_len(&den, groups * k, 8, "den") < 0)) ||
        (have_weight && check_len(&weight, total, 4, "weight") < 0))
        goto release_weight;
    Job job = {x.buf, x_double, mids.buf, mids_double, have_weight ? (const float *)weight.buf : NULL, labels.buf,
               width, have_sums ? (double *)num.buf : NULL, have_sums ? (double *)den.buf : NULL, groups, n, k};
    int status;
    Py_BEGIN_ALLOW_THREADS;
    status = run(&job);
    Py_END_ALLOW_THREADS;
    if (status < 0) PyErr_NoMemory();
    else result = Py_None, Py_INCREF(Py_None);
release_weight:
    if (have_weight) PyBuffer_Release(&weight);
release_den:
    if (have_sums) PyBuffer_Release(&den);
release_num:
    if (have_sums) PyBuffer_Release(&num);
release_labels:
    PyBuffer_Release(&labels);
release_mids:
    PyBuffer_Release(&mids);
release_x:
    PyBuffer_Release(&x);
    return result;
}

static PyMethodDef methods[] = {
    {"label_sums", label_sums, METH_VARARGS, "Nearest-centroid labels and per-centroid sums of grouped 1-D values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kmeans", "Compiled 1-D k-means step.", -1, methods};

PyMODINIT_FUNC PyInit__kmeans(void) { return PyModule_Create(&module); }
