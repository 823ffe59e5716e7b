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
 *
 * Values may also come as bfloat16 bit patterns (uint16, the top half of a float32): each chunk is
 * widened to float32 in L1 (exact), so a bf16 checkpoint is labelled without a float32 copy of it in
 * memory, with the labels and sums of that copy.
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
#define LINEAR_MAX 31    /* without a table, up to this many midpoints: compare with all of them (vectorizes) */
#define LUT_MAX_BINS 4096 /* lookup-table slots per group at most (n / 4 for short groups) */
#define LUT_MIN_VALUES 64 /* groups shorter than this are labelled without a table */
#define LUT_MAX_MIDS 65535

enum { X_F32 = 0, X_F64 = 1, X_BF16 = 2 }; /* the value types of x */

typedef struct {
    const void *x;       /* groups * n values: float32, float64 or bfloat16 bit patterns (x_kind) */
    int x_kind;
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

/* The lookup table of a group's midpoints (sorted, c of them): value v falls in slot
 * s(v) = 0 when !(t >= 0) (below the first midpoint, or NaN), bins + 1 when t >= bins, else 1 + (int)t
 * with t = (v - lo) * scale computed the same way for values and midpoints. s is non-decreasing in v
 * (each rounding step is), so every midpoint in a lower slot is below v and every midpoint in a higher
 * slot is not: entry[s] is the exact label of every v in slot s unless a midpoint shares the slot
 * (entry -1: then a binary search decides). Exact, and ~1 comparison per value instead of c. */
typedef struct {
    Py_ssize_t bins;
    int32_t *entry; /* bins + 2 slots */
} Lut;

#define DEFINE_COUNT(SUF, T)                                                                                      \
    static NOINLINE void above_##SUF(const T *restrict x, T mj, uint32_t *restrict cnt) {                     \
        for (int i = 0; i < CHUNK; i++) cnt[i] += x[i] > mj ? 1u : 0u; /* vectorizes: fixed length */         \
    }                                                                                                         \
    static inline int32_t slot_##SUF(T v, T lo, T scale, Py_ssize_t bins) { /* select-only: vectorizes */  \
        T t = (v - lo) * scale;                                                                               \
        t = t >= 0 ? t : (T)-1;                                                                               \
        t = t < (T)bins ? t : (T)bins;                                                                        \
        return (int32_t)t + 1;                                                                                \
    }                                                                                                         \
    /* Fills lut for sorted midpoints; 0 when their span is unusable (then no table is used). */             \
    static int lut_##SUF(const T *m, Py_ssize_t c, Lut *lut, T *lo, T *scale) {                               \
        const Py_ssize_t bins = lut->bins;                                                                    \
        if (c < 1 || c > LUT_MAX_MIDS) return 0;                                                              \
        const T span = m[c - 1] - m[0];                                                                       \
        *lo = m[0];                                                                                           \
        *scale = (T)bins / span;                                                                              \
        if (!(span > 0) || span - span != 0 || !(*scale > 0) || *scale - *scale != 0) return 0;              \
        int32_t *e = lut->entry;                                                                              \
        memset(e, 0, (size_t)(bins + 2) * sizeof(int32_t));                                                  \
        for (Py_ssize_t j = 0; j < c; j++) e[slot_##SUF(m[j], *lo, *scale, bins)]++;                          \
        int32_t below = 0;                                                                                    \
        for (Py_ssize_t s = 0; s < bins + 2; s++) {                                                           \
            const int32_t here = e[s];                                                                        \
            e[s] = here ? -1 : below;                                                                         \
            below += here;                                                                                    \
        }                                                                                                     \
        return 1;                                                                                             \
    }                                                                                                         \
    static inline uint32_t search_##SUF(T v, const T *m, Py_ssize_t c) { /* branch-free, c >= 1 */            \
        const T *b = m;                                                                                       \
        Py_ssize_t left = c;                                                                                  \
        while (left > 1) {                                                                                    \
            const Py_ssize_t half = left / 2;                                                                 \
            b = v > b[half] ? b + half : b;                                                                   \
            left -= half;                                                                                     \
        }                                                                                                     \
        return (uint32_t)((b - m) + (v > b[0]));                                                              \
    }                                                                                                         \
    /* cnt[i] = number of the c midpoints m below x[i], for len <= CHUNK values. lut: NULL, or built. */     \
    static void count_##SUF(const T *x, Py_ssize_t len, const T *m, Py_ssize_t c, int sorted, const Lut *lut, \
                            T lo, T scale, uint32_t *cnt) {                                                   \
        if (lut) {                                                                                            \
            int32_t slots[CHUNK];                                                                             \
            int any = 0;                                                                                      \
            for (Py_ssize_t i = 0; i < len; i++) slots[i] = slot_##SUF(x[i], lo, scale, lut->bins);          \
            for (Py_ssize_t i = 0; i < len; i++) {                                                            \
                const int32_t e = lut->entry[slots[i]];                                                       \
                cnt[i] = (uint32_t)e;                                                                         \
                any |= e < 0;                                                                                 \
            }                                                                                                 \
            if (any)                                                                                          \
                for (Py_ssize_t i = 0; i < len; i++)                                                          \
                    if ((int32_t)cnt[i] < 0) cnt[i] = search_##SUF(x[i], m, c);                               \
            return;                                                                                           \
        }                                                                                                     \
        if (!sorted || c <= LINEAR_MAX) {                                                                     \
            T pad[CHUNK];                                                                                     \
            if (len < CHUNK) { /* a short last chunk: count on a padded copy (the padding's counts unused) */ \
                memset(pad, 0, sizeof pad);                                                                   \
                if (len) memcpy(pad, x, (size_t)len * sizeof(T));                                             \
                x = pad;                                                                                      \
            }                                                                                                 \
            memset(cnt, 0, CHUNK * sizeof(uint32_t));                                                         \
            for (Py_ssize_t j = 0; j < c; j++) above_##SUF(x, m[j], cnt);                                     \
            return;                                                                                           \
        }                                                                                                     \
        for (Py_ssize_t i = 0; i < len; i++) cnt[i] = search_##SUF(x[i], m, c);                               \
    }

DEFINE_COUNT(ff, float)
DEFINE_COUNT(dd, double)

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

/* One group: labels, then (optionally) sums, chunk by chunk. Comparisons are in double (md: this
 * group's k - 1 midpoints widened) when x or the midpoints are float64, else in float (mf). */
static void run_group(const Job *job, Py_ssize_t g, const float *mf, const double *md, int sorted, Lut *table) {
    uint32_t cnt[CHUNK];
    double wide[CHUNK];
    float widened[CHUNK]; /* a chunk of bf16 values as float32 */
    const Py_ssize_t c = job->k - 1, base = g * job->n;
    double *num = job->num ? job->num + g * job->k : NULL;
    double *den = job->den ? job->den + g * job->k : NULL;
    const Lut *lut = NULL;
    float lo_f = 0, scale_f = 0;
    double lo_d = 0, scale_d = 0;
    if (table && sorted && c >= 4 && job->n >= LUT_MIN_VALUES) {
        table->bins = job->n / 4 < LUT_MAX_BINS ? job->n / 4 : LUT_MAX_BINS;
        if (md ? lut_dd(md, c, table, &lo_d, &scale_d) : lut_ff(mf, c, table, &lo_f, &scale_f)) lut = table;
    }
    for (Py_ssize_t at = 0; at < job->n; at += CHUNK) {
        const Py_ssize_t len = job->n - at < CHUNK ? job->n - at : CHUNK;
        const Py_ssize_t i0 = base + at;
        const double *xd = job->x_kind == X_F64 ? (const double *)job->x + i0 : NULL;
        const float *xf = job->x_kind == X_F32 ? (const float *)job->x + i0 : widened;
        if (job->x_kind == X_BF16) {
            const uint16_t *b = (const uint16_t *)job->x + i0;
            for (Py_ssize_t i = 0; i < len; i++) {
                const uint32_t u = (uint32_t)b[i] << 16;
                memcpy(&widened[i], &u, sizeof u);
            }
        }
        if (xd) {
            count_dd(xd, len, md, c, sorted, lut, lo_d, scale_d, cnt);
        } else if (md) {
            for (Py_ssize_t i = 0; i < len; i++) wide[i] = (double)xf[i];
            count_dd(wide, len, md, c, sorted, lut, lo_d, scale_d, cnt);
        } else {
            count_ff(xf, len, mf, c, sorted, lut, lo_f, scale_f, cnt);
        }
        store(job->labels, job->width, i0, cnt, len);
        if (!num) continue;
        const float *w = job->weight ? job->weight + i0 : NULL;
        if (xd) {
            for (Py_ssize_t i = 0; i < len; i++) {
                num[cnt[i]] += w ? xd[i] * (double)w[i] : xd[i];
                den[cnt[i]] += w ? (double)w[i] : 1.0;
            }
        } else {
            for (Py_ssize_t i = 0; i < len; i++) {
                num[cnt[i]] += w ? (double)(xf[i] * w[i]) : (double)xf[i];
                den[cnt[i]] += w ? (double)w[i] : 1.0;
            }
        }
    }
}

/* Returns 0, or -1 when a scratch allocation failed. Called without the GIL. */
static int run(const Job *job) {
    const Py_ssize_t c = job->k - 1;
    const int in_double = job->x_kind == X_F64 || job->mids_double;
    double *md = NULL;
    Lut table = {0, (int32_t *)malloc((LUT_MAX_BINS + 2) * sizeof(int32_t))};
    if (!table.entry) return -1;
    if (in_double && c > 0) {
        md = (double *)malloc((size_t)c * sizeof(double));
        if (!md) {
            free(table.entry);
            return -1;
        }
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
        run_group(job, g, mf, md, sorted, &table);
    }
    free(md);
    free(table.entry);
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

/* label_sums(x, x_kind, mids, mids_double, groups, n, k, labels, width, num, den, weight) -> None
 * x: groups*n values (x_kind 0: float32, 1: float64, 2: bfloat16 bit patterns as uint16); mids: groups*(k-1) sorted midpoints per
 * group; labels: writable groups*n of `width` bytes (1, 2 or 8); num, den: writable float64 groups*k
 * (both None: labels only); weight: float32 groups*n or None. */
static PyObject *label_sums(PyObject *self, PyObject *args) {
    PyObject *x_o, *mids_o, *labels_o, *num_o, *den_o, *weight_o;
    int x_kind, mids_double, width;
    Py_ssize_t groups, n, k;
    if (!PyArg_ParseTuple(args, "OiOpnnnOiOOO", &x_o, &x_kind, &mids_o, &mids_double, &groups, &n, &k, &labels_o,
                          &width, &num_o, &den_o, &weight_o))
        return NULL;
    if (x_kind < X_F32 || x_kind > X_BF16 || groups < 0 || n < 0 || k < 1 || (width != 1 && width != 2 && width != 8) ||
        (width < 8 && k - 1 >= ((Py_ssize_t)1 << (8 * width))) || k > ((Py_ssize_t)1 << 24) ||
        (groups > 0 && n > PY_SSIZE_T_MAX / groups) || (groups > 0 && k > PY_SSIZE_T_MAX / groups)) {
        PyErr_SetString(PyExc_ValueError, "label_sums: bad groups, n, k, label width or value type");
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
    if (check_len(&x, total, x_kind == X_F64 ? 8 : x_kind == X_BF16 ? 2 : 4, "x") < 0 || check_len(&mids, groups * (k - 1), mids_double ? 8 : 4, "mids") < 0 ||
        check_len(&labels, total, width, "labels") < 0 ||
        (have_sums && (check_len(&num, groups * k, 8, "num") < 0 || check_len(&den, groups * k, 8, "den") < 0)) ||
        (have_weight && check_len(&weight, total, 4, "weight") < 0))
        goto release_weight;
    Job job = {x.buf, x_kind, mids.buf, mids_double, have_weight ? (const float *)weight.buf : NULL, labels.buf,
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
