/* DCZ's compiled core: canonical-Huffman decoding and encoding of .dcz streams (formats/SPEC.md 3.4).
 *
 * C99, CPython's limited set of buffer-protocol calls, no numpy C API. The Python side (formats/native.py)
 * parses and checks every header, table and chunk index first; this file trusts only what it checks
 * itself: it never reads outside a payload (bits past the end read as zero), never writes outside the
 * caller's output buffer, and reports every defect back as a status for the reader's FormatError.
 *
 * Decoding: one table lookup per code through a 2^T-entry table (T = min(L, 12)); codes longer than T
 * bits take a short search over the canonical limits. A complete code of byte symbols with L <= 14
 * (the writer's chunked streams, usually) gets a 2^L-entry uint16 table instead, where every window
 * is a code: no miss check at all. A 64-bit window is loaded once and serves codes
 * until fewer than L valid bits remain. Chunked streams decode four chunks interleaved, so four
 * independent dependency chains keep the core busy (zstd's Huff0 does the same with four streams).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_LEN 24
#define TABLE_BITS 12
#define FAST_BITS 14 /* a 2^14-entry uint16 table is 32 KB: it stays in L1 */

enum { OK = 0, BAD_CODE = 1, CHUNK_END = 2, PAST_END = 3 };

typedef struct {
    int n_len;                 /* longest code length L */
    int tbits;                 /* table index bits T */
    uint32_t *table;           /* 2^T entries: rank | length << 24 (length 0: no code / longer than T) */
    uint64_t end[MAX_LEN];     /* one past the last canonical code of each length */
    uint64_t first[MAX_LEN];   /* first canonical code of each length */
    uint32_t offset[MAX_LEN];  /* rank of the first code of each length */
    uint32_t n_sym;
    const int64_t *values;     /* symbol of each rank (all < 2^24: checked by the caller) */
    uint16_t *table8;          /* complete code, L <= FAST_BITS, symbols < 256: 2^L entries, every L-bit
                                  window a code (low byte symbol, high byte length); else NULL */
    uint32_t *table2;          /* with table8, on long plain streams: 2^L entries giving the one or two
                                  codes that fit whole in the window's top L bits (pair_table); else NULL */
} Code;

/* The fast table of a complete code of byte symbols with L <= FAST_BITS: each code fills the 2^(L - len)
 * windows it prefixes, in canonical order, so the 2^L entries are filled exactly once (Kraft equality;
 * every range is still checked against the table size). */
static int fast_table(Code *c, const uint16_t *counts, int n_len) {
    size_t size = (size_t)1 << n_len;
    uint16_t *t = (uint16_t *)PyMem_Malloc(size * sizeof(uint16_t));
    if (!t) return -1;
    size_t w = 0;
    for (int i = 0; i < n_len; i++) {
        size_t span = (size_t)1 << (n_len - 1 - i);
        for (uint32_t q = 0; q < counts[i]; q++) {
            uint16_t entry = (uint16_t)(c->values[c->offset[i] + q] | ((i + 1) << 8));
            for (size_t end = w + span; w < end && w < size; w++) t[w] = entry;
        }
    }
    c->table8 = t;
    return 0;
}

/* The pair table of a fast code (zstd's HUF_decompress4X2 idea, for byte symbols): entry w holds the
 * code at the top of the L-bit window w and, when the next code also ends within those L bits, that
 * one too: symbol 1 | symbol 2 << 8 | codes (1 or 2) << 16 | bits used << 24. The second code is read
 * from table8 at the window's remaining bits shifted up (a prefix code's entry depends only on its own
 * bits, which are all inside the window when l1 + l2 <= L). One lookup then yields ~2 symbols, which
 * halves the serial chain of lookups that bounds a single stream's decode. */
static int pair_table(Code *c) {
    const int L = c->n_len;
    const size_t size = (size_t)1 << L, mask = size - 1;
    const uint16_t *t = c->table8;
    uint32_t *t2 = (uint32_t *)PyMem_Malloc(size * sizeof(uint32_t));
    if (!t2) return -1;
    for (size_t w = 0; w < size; w++) {
        uint32_t e1 = t[w], l1 = e1 >> 8;
        uint32_t e2 = t[(w << l1) & mask], l2 = e2 >> 8;
        if (l1 + l2 <= (uint32_t)L)
            t2[w] = (e1 & 0xff) | (e2 & 0xff) << 8 | 2u << 16 | (l1 + l2) << 24;
        else
            t2[w] = (e1 & 0xff) | 1u << 16 | l1 << 24;
    }
    c->table2 = t2;
    return 0;
}

static int code_init(Code *c, const uint16_t *counts, int n_len, const int64_t *values, Py_ssize_t n_values,
                     int byte_out) {
    uint64_t code = 0, kraft = 0;
    uint32_t rank = 0;
    c->n_len = n_len;
    c->tbits = n_len < TABLE_BITS ? n_len : TABLE_BITS;
    c->table = NULL;
    c->table8 = NULL;
    c->table2 = NULL;
    for (int i = 0; i < n_len; i++) {
        c->first[i] = code;
        c->offset[i] = rank;
        code += counts[i];
        rank += counts[i];
        c->end[i] = code;
        code <<= 1;
        kraft += (uint64_t)counts[i] << (n_len - 1 - i);
    }
    c->n_sym = rank;
    if ((Py_ssize_t)rank > n_values) return -2;
    c->values = values;
    /* Kraft equality, checked here too (the reader checks it before): with a complete code of at most
     * FAST_BITS bits every L-bit window is a code, so the fast decoders need no per-symbol check. */
    int small = byte_out; /* the fast decoders write bytes */
    for (uint32_t r = 0; r < rank; r++) small &= values[r] < 256;
    if (small && rank > 1 && n_len <= FAST_BITS && kraft == ((uint64_t)1 << n_len)) return fast_table(c, counts, n_len);
    /* Each code of at most T bits fills the 2^(T - len) windows it prefixes (ranges bounded by the table);
     * windows left at 0 start a longer code (or none): lookup's search takes over. O(2^T), not O(2^T T). */
    size_t size = (size_t)1 << c->tbits;
    c->table = (uint32_t *)PyMem_Calloc(size, sizeof(uint32_t));
    if (!c->table) return -1;
    for (int i = 0; i < c->tbits; i++) {
        int shift = c->tbits - 1 - i;
        for (uint32_t q = 0; q < counts[i]; q++) {
            uint64_t lo = (c->first[i] + q) << shift, hi = (c->first[i] + q + 1) << shift;
            uint32_t entry = (uint32_t)values[c->offset[i] + q] | ((uint32_t)(i + 1) << 24);
            for (uint64_t w = lo; w < hi && w < size; w++) c->table[w] = entry;
        }
    }
    return 0;
}

/* rank | length << 24 of the code at the top of `window`, or 0 when no code matches. */
static inline uint32_t lookup(const Code *c, uint64_t window) {
    uint32_t e = c->table[window >> (64 - c->tbits)];
    if (e) return e;
    for (int i = c->tbits; i < c->n_len; i++) {
        uint64_t value = window >> (63 - i);
        if (value < c->end[i]) {
            if (value < c->first[i]) return 0;
            return (uint32_t)c->values[c->offset[i] + (uint32_t)(value - c->first[i])] | ((uint32_t)(i + 1) << 24);
        }
    }
    return 0;
}

/* 57+ valid bits starting at `bit`, MSB first; bytes past the payload read as zero. */
static inline uint64_t window_at(const uint8_t *p, size_t n, uint64_t bit) {
    size_t byte = (size_t)(bit >> 3);
    uint64_t w = 0;
    if (byte + 8 <= n) {
        memcpy(&w, p + byte, 8);
#if defined(__GNUC__)
        w = __builtin_bswap64(w);
#else
        w = ((w & 0xff) << 56) | ((w & 0xff00) << 40) | ((w & 0xff0000) << 24) | ((w & 0xff000000ull) << 8) |
            ((w >> 8) & 0xff000000ull) | ((w >> 24) & 0xff0000) | ((w >> 40) & 0xff00) | (w >> 56);
#endif
    } else {
        for (size_t i = 0; i < 8 && byte + i < n; i++) w |= (uint64_t)p[byte + i] << (56 - 8 * i);
    }
    return w << (bit & 7);
}

typedef struct {
    const uint8_t *payload;
    size_t n;
    const Code *code;
    void *out;
} Job;

/* One decode_run (symbols [k, k_end) from payload bit *bit) and one decode_four (four chunks of
 * `steps` symbols, interleaved code by code) per output item type, so the store is a plain move. */
#define DECODERS(SUFFIX, T)                                                                                   \
    static int decode_run_##SUFFIX(const Job *j, int64_t k, int64_t k_end, uint64_t *bit) {                   \
        const Code *c = j->code;                                                                              \
        const int L = c->n_len;                                                                               \
        T *out = (T *)j->out;                                                                                 \
        uint64_t pos = *bit;                                                                                  \
        while (k < k_end) {                                                                                   \
            uint64_t w = window_at(j->payload, j->n, pos);                                                    \
            int avail = 57;                                                                                   \
            while (avail >= L && k < k_end) {                                                                 \
                uint32_t e = lookup(c, w);                                                                    \
                if (!e) { *bit = pos; return BAD_CODE; }                                                      \
                int len = (int)(e >> 24);                                                                     \
                out[k++] = (T)(e & 0xffffff);                                                                 \
                w <<= len;                                                                                    \
                avail -= len;                                                                                 \
                pos += (uint64_t)len;                                                                         \
            }                                                                                                 \
        }                                                                                                     \
        *bit = pos;                                                                                           \
        return OK;                                                                                            \
    }                                                                                                         \
    static int decode_four_##SUFFIX(const Job *j, const int64_t *k0, int64_t steps, uint64_t *bits) {         \
        const Code *c = j->code;                                                                              \
        const int L = c->n_len;                                                                               \
        T *out = (T *)j->out;                                                                                 \
        uint64_t pos[4] = {bits[0], bits[1], bits[2], bits[3]};                                               \
        int64_t k[4] = {k0[0], k0[1], k0[2], k0[3]};                                                          \
        int64_t done = 0;                                                                                     \
        while (done < steps) {                                                                                \
            uint64_t w[4];                                                                                    \
            for (int s = 0; s < 4; s++) w[s] = window_at(j->payload, j->n, pos[s]);                           \
            int64_t run = 57 / L;                                                                             \
            if (run > steps - done) run = steps - done;                                                       \
            for (int64_t r = 0; r < run; r++) {                                                               \
                for (int s = 0; s < 4; s++) {                                                                 \
                    uint32_t e = lookup(c, w[s]);                                                             \
                    if (!e) { bits[s] = pos[s]; return BAD_CODE | (s << 4); }                                 \
                    int len = (int)(e >> 24);                                                                 \
                    out[k[s]++] = (T)(e & 0xffffff);                                                          \
                    w[s] <<= len;                                                                             \
                    pos[s] += (uint64_t)len;                                                                  \
                }                                                                                             \
            }                                                                                                 \
            done += run;                                                                                      \
        }                                                                                                     \
        for (int s = 0; s < 4; s++) bits[s] = pos[s];                                                         \
        return OK;                                                                                            \
    }

DECODERS(u8, uint8_t)
DECODERS(i64, int64_t)

/* 64 bits at `bit` without a bounds check: the caller knows byte (bit >> 3) + 8 <= payload size. */
static inline uint64_t window_unchecked(const uint8_t *p, uint64_t bit) {
    uint64_t w;
    memcpy(&w, p + (bit >> 3), 8);
#if defined(__GNUC__)
    w = __builtin_bswap64(w);
#else
    w = ((w & 0xff) << 56) | ((w & 0xff00) << 40) | ((w & 0xff0000) << 24) | ((w & 0xff000000ull) << 8) |
        ((w >> 8) & 0xff000000ull) | ((w >> 24) & 0xff0000) | ((w >> 40) & 0xff00) | (w >> 56);
#endif
    return w << (bit & 7);
}

/* decode_run for a fast code (complete, L <= FAST_BITS) of byte symbols: one table8 entry per code. */
static int decode_run_fast_u8(const Job *j, int64_t k, int64_t k_end, uint64_t *bit) {
    const uint16_t *t = j->code->table8;
    const int L = j->code->n_len, shift = 64 - L;
    uint8_t *out = (uint8_t *)j->out;
    uint64_t pos = *bit;
    while (k < k_end) {
        uint64_t w = window_at(j->payload, j->n, pos);
        for (int avail = 57; avail >= L && k < k_end;) {
            uint16_t e = t[w >> shift];
            out[k++] = (uint8_t)e;
            w <<= e >> 8;
            avail -= e >> 8;
            pos += e >> 8;
        }
    }
    *bit = pos;
    return OK;
}

/* decode_four for a fast code of byte symbols, Huff0's inner loop: four chunks interleaved, one
 * 16-bit table entry per code (no miss is possible: every window is a code), a branch-free refill
 * per round of 57 / L codes, and the payload bound checked once per round for all four chunks (near
 * the end of the payload the checked window_at takes over). */
static int decode_four_fast_u8(const Job *j, const int64_t *k0, int64_t steps, uint64_t *bits) {
    const Code *c = j->code;
    const uint16_t *t = c->table8;
    const int shift = 64 - c->n_len;
    const int64_t per = 57 / c->n_len;
    uint8_t *out = (uint8_t *)j->out;
    uint8_t *o0 = out + k0[0], *o1 = out + k0[1], *o2 = out + k0[2], *o3 = out + k0[3];
    uint64_t p0 = bits[0], p1 = bits[1], p2 = bits[2], p3 = bits[3];
    const uint8_t *pay = j->payload;
    int64_t done = 0;
    while (done < steps) {
        uint64_t w0, w1, w2, w3;
        uint64_t top = p0 > p1 ? p0 : p1;
        top = top > p2 ? top : p2;
        top = top > p3 ? top : p3;
        if ((top >> 3) + 8 <= j->n) {
            w0 = window_unchecked(pay, p0); w1 = window_unchecked(pay, p1);
            w2 = window_unchecked(pay, p2); w3 = window_unchecked(pay, p3);
        } else {
            w0 = window_at(pay, j->n, p0); w1 = window_at(pay, j->n, p1);
            w2 = window_at(pay, j->n, p2); w3 = window_at(pay, j->n, p3);
        }
        int64_t run = steps - done < per ? steps - done : per;
        for (int64_t r = 0; r < run; r++) {
            uint16_t e0 = t[w0 >> shift], e1 = t[w1 >> shift], e2 = t[w2 >> shift], e3 = t[w3 >> shift];
            o0[done + r] = (uint8_t)e0; o1[done + r] = (uint8_t)e1;
            o2[done + r] = (uint8_t)e2; o3[done + r] = (uint8_t)e3;
            w0 <<= e0 >> 8; w1 <<= e1 >> 8; w2 <<= e2 >> 8; w3 <<= e3 >> 8;
            p0 += e0 >> 8; p1 += e1 >> 8; p2 += e2 >> 8; p3 += e3 >> 8;
        }
        done += run;
    }
    bits[0] = p0; bits[1] = p1; bits[2] = p2; bits[3] = p3;
    return OK;
}

/* decode_run_fast_u8 through the pair table: each lookup writes two output bytes (the second is
 * overwritten by the next lookup when the entry holds one code), so a round is sized to leave room
 * for two symbols per lookup; the last symbol, if any, goes through decode_run_fast_u8. */
static int decode_run_pair_u8(const Job *j, int64_t k, int64_t k_end, uint64_t *bit) {
    const uint32_t *t2 = j->code->table2;
    const int L = j->code->n_len, shift = 64 - L;
    const int64_t per = 57 / L; /* lookups per 57-bit window: each uses at most L bits */
    uint8_t *out = (uint8_t *)j->out;
    uint64_t pos = *bit;
    while (k_end - k >= 2) {
        uint64_t w = window_at(j->payload, j->n, pos);
        int64_t run = (k_end - k) / 2 < per ? (k_end - k) / 2 : per;
        for (int64_t r = 0; r < run; r++) {
            uint32_t e = t2[w >> shift];
            out[k] = (uint8_t)e;
            out[k + 1] = (uint8_t)(e >> 8);
            k += (e >> 16) & 3;
            w <<= e >> 24;
            pos += e >> 24;
        }
    }
    *bit = pos;
    return decode_run_fast_u8(j, k, k_end, bit);
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous buffer", what);
        return -1;
    }
    return 0;
}

/* decode(payload, counts_u16, values_i64, count, out, itemsize, chunk, starts_i64)
 *   -> (status, chunk_or_symbol, bit, expected_bit)
 * status OK: bit = payload bits used (the caller checks the pad rule).
 * BAD_CODE: a window that is no code, in chunk `chunk_or_symbol` (plain: 0) at `bit`.
 * CHUNK_END: chunk `chunk_or_symbol` ends at `bit`, the index starts the next one at `expected_bit`. */
static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *payload_o, *counts_o, *values_o, *out_o, *starts_o;
    long long count, chunk;
    int itemsize;
    if (!PyArg_ParseTuple(args, "OOOLOiLO", &payload_o, &counts_o, &values_o, &count, &out_o, &itemsize, &chunk,
                          &starts_o))
        return NULL;
    Py_buffer payload, counts, values, out, starts;
    if (get_buffer(payload_o, &payload, 0, "payload") < 0) return NULL;
    if (get_buffer(counts_o, &counts, 0, "counts") < 0) goto fail0;
    if (get_buffer(values_o, &values, 0, "values") < 0) goto fail1;
    if (get_buffer(out_o, &out, 1, "out") < 0) goto fail2;
    if (get_buffer(starts_o, &starts, 0, "starts") < 0) goto fail3;

    int n_len = (int)(counts.len / 2);
    size_t n_chunks = (size_t)(starts.len / 8);
    if (n_len < 1 || n_len > MAX_LEN || count < 0 || (itemsize != 1 && itemsize != 8) ||
        out.len < count * itemsize || (chunk > 0 && (long long)n_chunks != (count + chunk - 1) / chunk)) {
        PyErr_SetString(PyExc_ValueError, "decode: inconsistent arguments");
        goto fail4;
    }
    const int64_t *vals = (const int64_t *)values.buf;
    for (Py_ssize_t i = 0; i < values.len / 8; i++) {
        if (vals[i] < 0 || vals[i] >= (1 << 24)) {
            PyErr_SetString(PyExc_ValueError, "decode: values must lie in [0, 2^24)");
            goto fail4;
        }
    }
    Code code;
    int init = code_init(&code, (const uint16_t *)counts.buf, n_len, vals, values.len / 8, itemsize == 1);
    if (init == -2) {
        PyErr_SetString(PyExc_ValueError, "decode: fewer values than codes");
        goto fail4;
    }
    if (init < 0) {
        PyErr_NoMemory();
        goto fail4;
    }
    Job job = {(const uint8_t *)payload.buf, (size_t)payload.len, &code, out.buf};
    int (*run_fn)(const Job *, int64_t, int64_t, uint64_t *) = itemsize == 1 ? decode_run_u8 : decode_run_i64;
    int (*four_fn)(const Job *, const int64_t *, int64_t, uint64_t *) = itemsize == 1 ? decode_four_u8 : decode_four_i64;
    if (code.table8) { run_fn = decode_run_fast_u8; four_fn = decode_four_fast_u8; }
    /* A plain stream is one serial chain of lookups: the pair table halves it (15% faster on LeNet's
     * streams). Chunked streams already run four chains at once, where pairs measured no faster. The
     * table costs 2^L lookups to build: worth it on streams several times that long. */
    if (code.table8 && chunk <= 0 && count >= ((long long)4 << code.n_len)) {
        if (pair_table(&code) < 0) {
            PyMem_Free(code.table8);
            PyErr_NoMemory();
            goto fail4;
        }
        run_fn = decode_run_pair_u8;
    }
    long long status = OK, where = 0;
    uint64_t bit = 0, expected = 0;
    Py_BEGIN_ALLOW_THREADS;
    if (chunk <= 0) {
        status = run_fn(&job, 0, count, &bit);
    } else {
        const int64_t *st = (const int64_t *)starts.buf;
        size_t full = n_chunks - 1; /* chunks 0..full-1 hold `chunk` symbols, the last one the rest */
        size_t j = 0;
        for (; j + 4 <= full && status == OK; j += 4) {
            int64_t k0[4];
            uint64_t b[4];
            for (int s = 0; s < 4; s++) { k0[s] = (int64_t)(j + s) * chunk; b[s] = (uint64_t)st[j + s]; }
            int r = four_fn(&job, k0, chunk, b);
            if (r) { status = r & 15; where = (long long)(j + (r >> 4)); bit = b[r >> 4]; break; }
            for (int s = 0; s < 4; s++) {
                if (b[s] != (uint64_t)st[j + s + 1]) { status = CHUNK_END; where = (long long)(j + s); bit = b[s]; expected = (uint64_t)st[j + s + 1]; break; }
            }
        }
        for (; j < n_chunks && status == OK; j++) {
            uint64_t b = (uint64_t)st[j];
            int64_t k0 = (int64_t)j * chunk, k1 = j + 1 < n_chunks ? k0 + chunk : count;
            if (run_fn(&job, k0, k1, &b)) { status = BAD_CODE; where = (long long)j; bit = b; break; }
            if (j + 1 < n_chunks && b != (uint64_t)st[j + 1]) { status = CHUNK_END; where = (long long)j; bit = b; expected = (uint64_t)st[j + 1]; break; }
            bit = b;
        }
    }
    Py_END_ALLOW_THREADS;
    PyMem_Free(code.table);
    PyMem_Free(code.table8);
    PyMem_Free(code.table2);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&out);
    PyBuffer_Release(&values);
    PyBuffer_Release(&counts);
    PyBuffer_Release(&payload);
    return Py_BuildValue("(LLKK)", status, where, (unsigned long long)bit, (unsigned long long)expected);
fail4:
    PyBuffer_Release(&starts);
fail3:
    PyBuffer_Release(&out);
fail2:
    PyBuffer_Release(&values);
fail1:
    PyBuffer_Release(&counts);
fail0:
    PyBuffer_Release(&payload);
    return NULL;
}

/* unpack(payload, count, width, out, out_size) -> True, or False when the payload holds fewer than
 * count * width bits (nothing written: the caller's general path decides). The `count` values of
 * `width` bits (1..32), MSB first, into `out`: uint8 (out_size 1, width <= 8) or int64 (out_size 8). */
static PyObject *unpack(PyObject *self, PyObject *args) {
    PyObject *payload_o, *out_o;
    long long count;
    int width, size;
    if (!PyArg_ParseTuple(args, "OLiOi", &payload_o, &count, &width, &out_o, &size)) return NULL;
    Py_buffer payload, out;
    if (get_buffer(payload_o, &payload, 0, "payload") < 0) return NULL;
    if (get_buffer(out_o, &out, 1, "out") < 0) { PyBuffer_Release(&payload); return NULL; }
    if (width < 1 || width > 32 || count < 0 || !(size == 8 || (size == 1 && width <= 8)) ||
        out.len / size < count) {
        PyBuffer_Release(&out); PyBuffer_Release(&payload);
        PyErr_SetString(PyExc_ValueError, "unpack: inconsistent arguments");
        return NULL;
    }
    int enough = (unsigned long long)count <= (unsigned long long)payload.len * 8 / (unsigned)width;
    if (enough) {
        const uint8_t *p = (const uint8_t *)payload.buf;
        uint8_t *o8 = (uint8_t *)out.buf;
        int64_t *o64 = (int64_t *)out.buf;
        uint64_t mask = ((uint64_t)1 << width) - 1, acc = 0;
        int have = 0; /* valid low bits of acc: < width before a refill, so at most 39 after it */
        size_t at = 0;
        Py_BEGIN_ALLOW_THREADS;
        for (long long i = 0; i < count; i++) {
            while (have < width) { acc = (acc << 8) | p[at++]; have += 8; }
            uint64_t v = (acc >> (have - width)) & mask;
            have -= width;
            if (size == 1) o8[i] = (uint8_t)v;
            else o64[i] = (int64_t)v;
        }
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&out); PyBuffer_Release(&payload);
    return PyBool_FromLong(enough);
}

/* The statements run with `sv` pointing at the symbols as SIZE-byte unsigned integers (1, 2, 4 or 8);
 * an int64 buffer reads as uint64, so one `v < limit` test also rejects a negative symbol. */
#define SYMBOL_LOOP(SIZE, ...)                                                           \
    switch (SIZE) {                                                                      \
    case 1: { const uint8_t *sv = (const uint8_t *)symbols_buf; __VA_ARGS__ break; }     \
    case 2: { const uint16_t *sv = (const uint16_t *)symbols_buf; __VA_ARGS__ break; }   \
    case 4: { const uint32_t *sv = (const uint32_t *)symbols_buf; __VA_ARGS__ break; }   \
    default: { const uint64_t *sv = (const uint64_t *)symbols_buf; __VA_ARGS__ break; }  \
    }

static int symbol_size_ok(int size, Py_ssize_t len) {
    return (size == 1 || size == 2 || size == 4 || size == 8) && len % size == 0;
}

/* histogram(symbols, symbol_size, counts_i64) -> True, or False when a symbol is >= len(counts) (or a
 * negative int64): then nothing is promised about `counts` and the caller takes its general path.
 * Adds each symbol's occurrences to counts[symbol] (the caller zeroes it). */
static PyObject *histogram(PyObject *self, PyObject *args) {
    PyObject *symbols_o, *counts_o;
    int size;
    if (!PyArg_ParseTuple(args, "OiO", &symbols_o, &size, &counts_o)) return NULL;
    Py_buffer symbols, counts;
    if (get_buffer(symbols_o, &symbols, 0, "symbols") < 0) return NULL;
    if (get_buffer(counts_o, &counts, 1, "counts") < 0) { PyBuffer_Release(&symbols); return NULL; }
    if (!symbol_size_ok(size, symbols.len) || counts.len % 8) {
        PyBuffer_Release(&counts); PyBuffer_Release(&symbols);
        PyErr_SetString(PyExc_ValueError, "histogram: inconsistent arguments");
        return NULL;
    }
    const void *symbols_buf = symbols.buf;
    int64_t *cv = (int64_t *)counts.buf;
    size_t n = (size_t)symbols.len / (size_t)size, limit = (size_t)counts.len / 8, i = 0;
    Py_BEGIN_ALLOW_THREADS;
    SYMBOL_LOOP(size, for (; i < n; i++) { uint64_t v = sv[i]; if (v >= limit) break; cv[v]++; })
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&counts); PyBuffer_Release(&symbols);
    return PyBool_FromLong(i == n);
}

/* `x` as 4 bytes, most significant first, in one (unaligned) store. */
static inline void store_be32(uint8_t *p, uint32_t x) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    x = __builtin_bswap32(x);
    memcpy(p, &x, 4);
#else
    p[0] = (uint8_t)(x >> 24); p[1] = (uint8_t)(x >> 16); p[2] = (uint8_t)(x >> 8); p[3] = (uint8_t)x;
#endif
}

/* huffman_encode(symbols, symbol_size, codes_u32, lengths_u8, chunk, chunk_bits_i64, out) -> bits
 * The canonical code of each symbol (codes/lengths indexed by symbol value) concatenated MSB first into
 * `out` (bytearray sized by the caller to the payload's whole bytes; the bits after the last code are
 * zero), or only counted when `out` is None. With chunk > 0, chunk_bits receives the bits of each of
 * the (n - 1) // chunk full chunks (the chunk index, SPEC 3.4.1), found while encoding.
 * A symbol without a code (outside the tables, or length 0) or a too small `out` is a ValueError. */
static PyObject *huffman_encode(PyObject *self, PyObject *args) {
    PyObject *symbols_o, *codes_o, *lengths_o, *bits_o, *out_o;
    int size;
    long long chunk;
    if (!PyArg_ParseTuple(args, "OiOOLOO", &symbols_o, &size, &codes_o, &lengths_o, &chunk, &bits_o, &out_o))
        return NULL;
    Py_buffer symbols, codes, lengths, bits, out = {0};
    int write = out_o != Py_None;
    if (get_buffer(symbols_o, &symbols, 0, "symbols") < 0) return NULL;
    if (get_buffer(codes_o, &codes, 0, "codes") < 0) goto fail0;
    if (get_buffer(lengths_o, &lengths, 0, "lengths") < 0) goto fail1;
    if (get_buffer(bits_o, &bits, 1, "chunk_bits") < 0) goto fail2;
    if (write && get_buffer(out_o, &out, 1, "out") < 0) goto fail3;
    size_t n = symbol_size_ok(size, symbols.len) ? (size_t)symbols.len / (size_t)size : 0;
    size_t n_codes = (size_t)codes.len / 4 < (size_t)lengths.len ? (size_t)codes.len / 4 : (size_t)lengths.len;
    size_t full = chunk > 0 && n ? (n - 1) / (size_t)chunk : 0;
    if (!symbol_size_ok(size, symbols.len) || codes.len % 4 || chunk < 0 || (size_t)bits.len != full * 8) {
        PyErr_SetString(PyExc_ValueError, "huffman_encode: inconsistent arguments");
        goto fail4;
    }
    const void *symbols_buf = symbols.buf;
    const uint32_t *cv = (const uint32_t *)codes.buf;
    const uint8_t *lv = (const uint8_t *)lengths.buf;
    int64_t *bv = (int64_t *)bits.buf;
    uint8_t *o = (uint8_t *)out.buf;
    size_t cap = write ? (size_t)out.len : 0, at = 0, i = 0, span = chunk > 0 ? (size_t)chunk : n;
    uint64_t acc = 0, total = 0, chunk_start = 0;
    int filled = 0, bad = 0; /* bits in acc, MSB first; len <= 24 and filled < 32 keep them within 64 */
    Py_BEGIN_ALLOW_THREADS;
    for (size_t c = 0; i < n && !bad; c++) {
        size_t end = n - i < span ? n : i + span;
        if (!write) {
            SYMBOL_LOOP(size, for (; i < end; i++) {
                uint64_t v = sv[i];
                int len = v < n_codes ? lv[v] : 0;
                if (!len) { bad = 1; break; }
                total += (uint64_t)len;
            })
        } else {
            /* bits written so far = 8 * at + filled: no per-symbol total; 32 bits leave as one store */
            SYMBOL_LOOP(size, for (; i < end; i++) {
                uint64_t v = sv[i];
                int len = v < n_codes ? lv[v] : 0;
                if (!len) { bad = 1; break; }
                acc |= (uint64_t)cv[v] << (64 - filled - len);
                filled += len;
                if (filled >= 32) {
                    if (at + 4 > cap) { bad = 1; break; }
                    store_be32(o + at, (uint32_t)(acc >> 32));
                    at += 4;
                    acc <<= 32;
                    filled -= 32;
                }
            })
            total = 8 * (uint64_t)at + (uint64_t)filled;
        }
        if (c < full && !bad) bv[c] = (int64_t)(total - chunk_start);
        chunk_start = total;
    }
    while (write && !bad && filled > 0) {
        if (at >= cap) { bad = 1; break; }
        o[at++] = (uint8_t)(acc >> 56);
        acc <<= 8;
        filled -= 8;
    }
    Py_END_ALLOW_THREADS;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "huffman_encode: a symbol without a code, or the output buffer is too small");
        goto fail4;
    }
    if (write) PyBuffer_Release(&out);
    PyBuffer_Release(&bits); PyBuffer_Release(&lengths); PyBuffer_Release(&codes); PyBuffer_Release(&symbols);
    return PyLong_FromUnsignedLongLong(total);
fail4:
    if (write) PyBuffer_Release(&out);
fail3:
    PyBuffer_Release(&bits);
fail2:
    PyBuffer_Release(&lengths);
fail1:
    PyBuffer_Release(&codes);
fail0:
    PyBuffer_Release(&symbols);
    return NULL;
}

/* pack(values, width, out[, value_size=8]): the low `width` bits of every value (1-, 2-, 4- or 8-byte
 * integers), MSB first, into `out` (sized by the caller to exactly ceil(n * width / 8) bytes); the bits
 * after the last value are zero. */
static PyObject *pack(PyObject *self, PyObject *args) {
    PyObject *values_o, *out_o;
    int width, size = 8;
    if (!PyArg_ParseTuple(args, "OiO|i", &values_o, &width, &out_o, &size)) return NULL;
    if (width < 1 || width > 32) {
        PyErr_SetString(PyExc_ValueError, "pack: width outside 1..32");
        return NULL;
    }
    Py_buffer values, out;
    if (get_buffer(values_o, &values, 0, "values") < 0) return NULL;
    if (get_buffer(out_o, &out, 1, "out") < 0) { PyBuffer_Release(&values); return NULL; }
    size_t n = (size_t)values.len / (size_t)(size > 0 ? size : 1);
    if (!symbol_size_ok(size, values.len) || (size_t)out.len != (n * (size_t)width + 7) / 8) {
        PyBuffer_Release(&out); PyBuffer_Release(&values);
        PyErr_SetString(PyExc_ValueError, "pack: output size does not match");
        return NULL;
    }
    const void *symbols_buf = values.buf;
    uint8_t *o = (uint8_t *)out.buf;
    uint64_t mask = ((uint64_t)1 << width) - 1, acc = 0;
    int filled = 0;
    size_t at = 0;
    Py_BEGIN_ALLOW_THREADS;
    SYMBOL_LOOP(size, for (size_t i = 0; i < n; i++) {
        acc |= ((uint64_t)sv[i] & mask) << (64 - filled - width);
        filled += width;
        if (filled >= 32) {
            o[at] = (uint8_t)(acc >> 56); o[at + 1] = (uint8_t)(acc >> 48);
            o[at + 2] = (uint8_t)(acc >> 40); o[at + 3] = (uint8_t)(acc >> 32);
            at += 4;
            acc <<= 32;
            filled -= 32;
        }
    })
    while (filled > 0) {
        o[at++] = (uint8_t)(acc >> 56);
        acc <<= 8;
        filled -= 8;
    }
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&out); PyBuffer_Release(&values);
    Py_RETURN_NONE;
}

static inline int64_t item(const void *buf, int itemsize, int64_t i) {
    return itemsize == 1 ? (int64_t)((const uint8_t *)buf)[i] : ((const int64_t *)buf)[i];
}


/* scatter's loop for byte gaps and byte labels (gap width <= 8, label width <= 8: the common case),
 * with the same checks and statuses; the label and gap bounds are checked once per row where they
 * cannot fail, so the inner loop has one data-dependent branch (filler or entry). */
static long long scatter_bytes(const Py_buffer *rc, int rc_size, const uint8_t *gp, int64_t n_gaps,
                               const uint8_t *lb, int64_t n_labels, const float *bk, int64_t rows, int64_t cols,
                               int filler, int64_t group_rows, int64_t book_size, float *o, long long *row_out,
                               long long *value_out) {
    int64_t g = 0, e = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = item(rc->buf, rc_size, r), col = -1;
        float *orow = o + r * cols;
        const float *group_book = bk + (r / group_rows) * book_size;
        if (n < 0 || g + n > n_gaps) { *row_out = r; return 5; }
        memset(orow, 0, (size_t)cols * sizeof(float)); /* the row is still in cache when its entries land */
        const uint8_t *gr = gp + g;
        int64_t span = 0, fillers = 0; /* columns the row advances, and its fillers: a vectorizable pre-pass */
        for (int64_t i = 0; i < n; i++) {
            int is_filler = gr[i] == filler;
            fillers += is_filler;
            span += is_filler ? filler : gr[i] + 1;
        }
        if (span <= cols && e + (n - fillers) <= n_labels) { /* no column past the row, no label past the stream */
            for (int64_t i = 0; i < n; i++) {
                int d = gr[i];
                if (d == filler) { col += filler; continue; }
                col += d + 1;
                uint8_t k = lb[e++];
                if (k >= book_size) { *row_out = r; *value_out = k; return 4; }
                orow[col] = group_book[k];
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                int d = gr[i];
                if (d == filler) { col += filler; continue; }
                col += d + 1;
                if (col >= cols) { *row_out = r; *value_out = col; return 2; }
                if (e >= n_labels) { *row_out = r; return 5; }
                uint8_t k = lb[e++];
                if (k >= book_size) { *row_out = r; *value_out = k; return 4; }
                orow[col] = group_book[k];
            }
        }
        if (n && gr[n - 1] == filler) { *row_out = r; return 1; }
        g += n;
    }
    *value_out = e;
    return 0;
}

/* scatter(row_counts, gaps, labels, book, rows, cols, gap_bits, group_rows, book_size, out)
 *   -> (status, row, value)
 * The CSR walk of a sparse tensor (SPEC.md, relative indices with fillers) fused with the codebook
 * gather: out[r * cols + c] = book[group(r)][label] for every kept entry, in one pass. `out` need not
 * be zeroed: each row is cleared just before its entries are written (on status 0 every element of
 * `out` has been written), so the dense array is written once, row by row, while it is in cache. `labels` is
 * None for a `sparse` tensor, whose `book` then holds the kept values themselves. Index arrays are
 * uint8 or int64 (their item size says which). The caller has checked the stream lengths (rows
 * row counts adding up to the gap count; one label per entry); this checks every symbol:
 *   1 row `row` ends with a filler      2 row `row` runs to column `value` >= cols
 *   3 `value` entries (the caller compares with nnz: status 0 carries the count too)
 *   4 label `value` >= book_size        5 more entries than labels / values */
static PyObject *scatter(PyObject *self, PyObject *args) {
    PyObject *rc_o, *gaps_o, *labels_o, *book_o, *out_o;
    long long rows, cols, group_rows, book_size;
    int gap_bits;
    if (!PyArg_ParseTuple(args, "OOOOLLiLLO", &rc_o, &gaps_o, &labels_o, &book_o, &rows, &cols, &gap_bits, &group_rows,
                          &book_size, &out_o))
        return NULL;
    Py_buffer rc, gaps, labels, book, out;
    int have_labels = labels_o != Py_None;
    if (get_buffer(rc_o, &rc, 0, "row counts") < 0) return NULL;
    if (get_buffer(gaps_o, &gaps, 0, "gaps") < 0) { PyBuffer_Release(&rc); return NULL; }
    if (have_labels && get_buffer(labels_o, &labels, 0, "labels") < 0) {
        PyBuffer_Release(&gaps); PyBuffer_Release(&rc);
        return NULL;
    }
    if (get_buffer(book_o, &book, 0, "book") < 0) {
        if (have_labels) PyBuffer_Release(&labels);
        PyBuffer_Release(&gaps); PyBuffer_Release(&rc);
        return NULL;
    }
    if (get_buffer(out_o, &out, 1, "out") < 0) {
        PyBuffer_Release(&book);
        if (have_labels) PyBuffer_Release(&labels);
        PyBuffer_Release(&gaps); PyBuffer_Release(&rc);
        return NULL;
    }
    int rc_size = rc.itemsize, gap_size = gaps.itemsize, label_size = have_labels ? labels.itemsize : 1;
    int64_t n_gaps = gaps.len / gap_size, n_labels = have_labels ? labels.len / label_size : book.len / 4;
    int64_t filler = ((int64_t)1 << gap_bits) - 1;
    int bad_args = rows < 0 || cols < 0 || gap_bits < 1 || gap_bits > 32 || group_rows < 1 || book_size < 1 ||
                   rc.len / rc_size != rows || out.len / 4 < rows * cols ||
                   (have_labels && book.len / 4 < ((rows + group_rows - 1) / group_rows) * book_size) ||
                   (rc_size != 1 && rc_size != 8) || (gap_size != 1 && gap_size != 8) ||
                   (label_size != 1 && label_size != 8);
    long long status = 0, row = 0, value = 0;
    if (!bad_args) {
        const float *bk = (const float *)book.buf;
        float *o = (float *)out.buf;
        int64_t g = 0, e = 0;
        int bytes_path = gap_size == 1 && have_labels && label_size == 1 && filler < 256;
        Py_BEGIN_ALLOW_THREADS;
        if (bytes_path)
            status = scatter_bytes(&rc, rc_size, (const uint8_t *)gaps.buf, n_gaps, (const uint8_t *)labels.buf, n_labels,
                                   bk, rows, cols, (int)filler, group_rows, book_size, o, &row, &value);
        for (int64_t r = 0; r < rows && !status && !bytes_path; r++) {
            int64_t n = item(rc.buf, rc_size, r), col = -1, base = r * cols;
            const float *group_book = have_labels ? bk + (r / group_rows) * book_size : bk;
            if (n < 0 || g + n > n_gaps) { status = 5; row = r; break; }
            memset(o + base, 0, (size_t)cols * sizeof(float));
            for (int64_t i = 0; i < n; i++) {
                int64_t d = item(gaps.buf, gap_size, g + i);
                if (d == filler) { col += filler; continue; }
                col += d + 1;
                if (col >= cols) { status = 2; row = r; value = col; break; }
                if (e >= n_labels) { status = 5; row = r; break; }
                if (have_labels) {
                    int64_t k = item(labels.buf, label_size, e);
                    if (k >= book_size) { status = 4; row = r; value = k; break; }
                    o[base + col] = group_book[k];
                } else {
                    o[base + col] = bk[e];
                }
                e++;
            }
            if (!status && n && item(gaps.buf, gap_size, g + n - 1) == filler) { status = 1; row = r; }
            g += n;
        }
        if (!status && !bytes_path) value = e;
        if (!status) memset(o + rows * cols, 0, (size_t)(out.len / 4 - rows * cols) * sizeof(float)); /* past the 2-D view */
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&out); PyBuffer_Release(&book);
    if (have_labels) PyBuffer_Release(&labels);
    PyBuffer_Release(&gaps); PyBuffer_Release(&rc);
    if (bad_args) {
        PyErr_SetString(PyExc_ValueError, "scatter: inconsistent arguments");
        return NULL;
    }
    return Py_BuildValue("(LLL)", status, row, value);
}


/* One walk of a 2-D bool mask for the writer's CSR streams (the inverse of scatter's walk): per row
 * the symbol count incl. fillers, the gap symbols (2^b - 1 a filler advancing that many columns), and
 * per kept entry either its flat index (csr_encode) or its label, gathered (csr_labels). Zero mask
 * bytes are skipped eight at a time; every write is bounds-checked against its buffer. */
typedef struct {
    const uint8_t *mask;
    int64_t rows, cols, filler;
    int64_t *row_counts;
    void *gaps;                 /* int64 (gap_size 8) or uint8 (gap_size 1) */
    int gap_size;
    int64_t gap_cap;
    int64_t *flat;              /* csr_encode: flat index of each kept entry, or NULL */
    const void *labels;         /* csr_labels: the dense labels (label_size bytes each), or NULL */
    int label_size, label_signed;
    uint8_t *kept;              /* csr_labels: the label of each kept entry, low byte */
    int64_t kept_cap;
    int64_t n_gaps, n_kept, lo, hi; /* results; lo/hi: the lowest and highest kept label */
} CsrWalk;

static inline int64_t label_at(const void *b, int size, int is_signed, int64_t i) {
    switch (size) {
    case 1: return is_signed ? (int64_t)((const int8_t *)b)[i] : (int64_t)((const uint8_t *)b)[i];
    case 2: return is_signed ? (int64_t)((const int16_t *)b)[i] : (int64_t)((const uint16_t *)b)[i];
    case 4: return is_signed ? (int64_t)((const int32_t *)b)[i] : (int64_t)((const uint32_t *)b)[i];
    default: return ((const int64_t *)b)[i];
    }
}

static inline void put_gap(void *gaps, int gap_size, int64_t g, int64_t value) {
    if (gap_size == 1) ((uint8_t *)gaps)[g] = (uint8_t)value;
    else ((int64_t *)gaps)[g] = value;
}

#if defined(__GNUC__)
#define ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define ALWAYS_INLINE inline
#endif

/* Bit j set when mask byte p[j] is nonzero, for the 64 bytes at p (SSE2: four compares and movemasks). */
static inline uint64_t kept_bits64(const uint8_t *p) {
    uint64_t bits = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * k));
        bits |= (uint64_t)(~_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)) & 0xffff) << (16 * k);
    }
#else
    for (int j = 0; j < 64; j++) bits |= (uint64_t)(p[j] != 0) << j;
#endif
    return bits;
}

static inline int lowest_bit(uint64_t x) { /* x != 0 */
#if defined(__GNUC__)
    return __builtin_ctzll(x);
#else
    int n = 0;
    while (!(x & 1)) { x >>= 1; n++; }
    return n;
#endif
}

/* 0, or 1 when an output buffer is too small. Columns are scanned 64 at a time as a bit mask, so the
 * loop over kept entries exits (a mispredicted branch) once per 64 columns, not once per entry. */
static ALWAYS_INLINE int csr_walk_as(CsrWalk *w, const int gap_size, const int label_size, const int label_signed) {
    const int64_t cols = w->cols, filler = w->filler;
    int64_t g = 0, e = 0, lo = INT64_MAX, hi = INT64_MIN;
    for (int64_t r = 0; r < w->rows; r++) {
        const uint8_t *mr = w->mask + r * cols;
        int64_t prev = -1, g0 = g;
        for (int64_t c = 0; c < cols; c += 64) {
            uint64_t bits = 0;
            if (cols - c >= 64) bits = kept_bits64(mr + c);
            else for (int64_t j = 0; c + j < cols; j++) bits |= (uint64_t)(mr[c + j] != 0) << j;
            while (bits) {
                int b = lowest_bit(bits);
                bits &= bits - 1;
                int64_t at = c + b, gap = at - prev - 1;
                int64_t quot = gap < filler ? 0 : gap / filler; /* usually no filler: skip the division */
                if (g + quot + 1 > w->gap_cap || e >= w->kept_cap) return 1;
                for (int64_t q = 0; q < quot; q++) put_gap(w->gaps, gap_size, g++, filler);
                put_gap(w->gaps, gap_size, g++, gap - quot * filler);
                if (!label_size) {
                    w->flat[e] = r * cols + at;
                } else {
                    int64_t label = label_at(w->labels, label_size, label_signed, r * cols + at);
                    lo = label < lo ? label : lo;
                    hi = label > hi ? label : hi;
                    w->kept[e] = (uint8_t)label;
                }
                e++;
                prev = at;
            }
        }
        w->row_counts[r] = g - g0;
    }
    w->n_gaps = g; w->n_kept = e; w->lo = lo; w->hi = hi;
    return 0;
}

/* csr_walk_as with constant arguments: one specialised loop per case (no per-entry type switch). */
static int csr_walk(CsrWalk *w) {
    if (!w->labels) return w->gap_size == 1 ? csr_walk_as(w, 1, 0, 0) : csr_walk_as(w, 8, 0, 0);
    switch (w->label_size * 2 + w->label_signed) {
    case 2: return csr_walk_as(w, 1, 1, 0);
    case 3: return csr_walk_as(w, 1, 1, 1);
    case 4: return csr_walk_as(w, 1, 2, 0);
    case 5: return csr_walk_as(w, 1, 2, 1);
    case 8: return csr_walk_as(w, 1, 4, 0);
    case 9: return csr_walk_as(w, 1, 4, 1);
    default: return csr_walk_as(w, 1, 8, 1);
    }
}

/* csr_encode(mask_u8, rows, cols, gap_bits, row_counts_i64, gaps_i64, flat_i64) -> (gap symbols, kept)
 * csr_walk with int64 gaps and the flat index of each kept entry: the same arrays as
 * tensors.csr_streams' numpy path. The caller sizes gaps for the worst case. */
static PyObject *csr_encode(PyObject *self, PyObject *args) {
    PyObject *mask_o, *rc_o, *gaps_o, *flat_o;
    long long rows, cols;
    int gap_bits;
    if (!PyArg_ParseTuple(args, "OLLiOOO", &mask_o, &rows, &cols, &gap_bits, &rc_o, &gaps_o, &flat_o)) return NULL;
    Py_buffer mask, rc, gaps, flat;
    if (get_buffer(mask_o, &mask, 0, "mask") < 0) return NULL;
    if (get_buffer(rc_o, &rc, 1, "row counts") < 0) { PyBuffer_Release(&mask); return NULL; }
    if (get_buffer(gaps_o, &gaps, 1, "gaps") < 0) { PyBuffer_Release(&rc); PyBuffer_Release(&mask); return NULL; }
    if (get_buffer(flat_o, &flat, 1, "flat") < 0) {
        PyBuffer_Release(&gaps); PyBuffer_Release(&rc); PyBuffer_Release(&mask);
        return NULL;
    }
    int bad = rows < 0 || cols < 0 || gap_bits < 1 || gap_bits > 32 || mask.len != rows * cols || rc.len != rows * 8;
    CsrWalk w = {(const uint8_t *)mask.buf, rows, cols, ((int64_t)1 << gap_bits) - 1, (int64_t *)rc.buf,
                 gaps.buf, 8, gaps.len / 8, (int64_t *)flat.buf, NULL, 0, 0, NULL, flat.len / 8, 0, 0, 0, 0};
    if (!bad) {
        Py_BEGIN_ALLOW_THREADS;
        bad = csr_walk(&w);
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&flat); PyBuffer_Release(&gaps); PyBuffer_Release(&rc); PyBuffer_Release(&mask);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "csr_encode: inconsistent arguments or output buffers too small");
        return NULL;
    }
    return Py_BuildValue("(LL)", (long long)w.n_gaps, (long long)w.n_kept);
}

/* csr_labels(mask_u8, rows, cols, gap_bits, labels, label_size, label_signed, row_counts_i64, gaps_u8, kept_u8)
 *   -> (gap symbols, kept, lowest label, highest label)
 * The writer's streams of a pruned shared tensor in one pass: csr_walk with byte gaps (gap_bits <= 8)
 * and the label of each kept entry gathered from the dense labels (integers of label_size bytes),
 * stored as its low byte; the caller refuses the result unless 0 <= lowest and highest < 256. */
static PyObject *csr_labels(PyObject *self, PyObject *args) {
    PyObject *mask_o, *labels_o, *rc_o, *gaps_o, *kept_o;
    long long rows, cols;
    int gap_bits, label_size, label_signed;
    if (!PyArg_ParseTuple(args, "OLLiOiiOOO", &mask_o, &rows, &cols, &gap_bits, &labels_o, &label_size, &label_signed,
                          &rc_o, &gaps_o, &kept_o))
        return NULL;
    Py_buffer mask, labels, rc, gaps, kept;
    if (get_buffer(mask_o, &mask, 0, "mask") < 0) return NULL;
    if (get_buffer(labels_o, &labels, 0, "labels") < 0) goto fail0;
    if (get_buffer(rc_o, &rc, 1, "row counts") < 0) goto fail1;
    if (get_buffer(gaps_o, &gaps, 1, "gaps") < 0) goto fail2;
    if (get_buffer(kept_o, &kept, 1, "kept") < 0) goto fail3;
    int bad = rows < 0 || cols < 0 || gap_bits < 1 || gap_bits > 8 || mask.len != rows * cols ||
              rc.len != rows * 8 || !symbol_size_ok(label_size, labels.len) || labels.len != mask.len * label_size;
    CsrWalk w = {(const uint8_t *)mask.buf, rows, cols, ((int64_t)1 << gap_bits) - 1, (int64_t *)rc.buf,
                 gaps.buf, 1, gaps.len, NULL, labels.buf, label_size, label_signed != 0, (uint8_t *)kept.buf,
                 kept.len, 0, 0, 0, 0};
    if (!bad) {
        Py_BEGIN_ALLOW_THREADS;
        bad = csr_walk(&w);
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&kept);
    PyBuffer_Release(&gaps); PyBuffer_Release(&rc); PyBuffer_Release(&labels); PyBuffer_Release(&mask);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "csr_labels: inconsistent arguments or output buffers too small");
        return NULL;
    }
    return Py_BuildValue("(LLLL)", (long long)w.n_gaps, (long long)w.n_kept, (long long)w.lo, (long long)w.hi);
fail3:
    PyBuffer_Release(&gaps);
fail2:
    PyBuffer_Release(&rc);
fail1:
    PyBuffer_Release(&labels);
fail0:
    PyBuffer_Release(&mask);
    return NULL;
}

/* formats/_native/range.c: stream coding 3 */
PyObject *dcz_range_decode(PyObject *self, PyObject *args);
PyObject *dcz_range_encode(PyObject *self, PyObject *args);

static PyMethodDef methods[] = {
    {"range_decode", dcz_range_decode, METH_VARARGS, "Decode an adaptive binary range-coded stream (coding 3)."},
    {"range_encode", dcz_range_encode, METH_VARARGS, "The adaptive binary range-coded payload of symbols (coding 3)."},
    {"csr_encode", csr_encode, METH_VARARGS, "The CSR row counts, gap symbols and kept flat indices of a bool mask."},
    {"scatter", scatter, METH_VARARGS, "CSR walk + codebook gather of a sparse tensor into a dense float32 buffer."},
    {"pack", pack, METH_VARARGS, "Pack values at a fixed bit width, MSB first."},
    {"unpack", unpack, METH_VARARGS, "Unpack values of a fixed bit width, MSB first."},
    {"decode", decode, METH_VARARGS, "Decode a canonical-Huffman stream (plain or chunked) into a buffer."},
    {"csr_labels", csr_labels, METH_VARARGS, "The CSR row counts and byte gaps of a bool mask, and the kept entries' labels."},
    {"histogram", histogram, METH_VARARGS, "Add the occurrences of each symbol into a counts array."},
    {"huffman_encode", huffman_encode, METH_VARARGS, "Canonical-Huffman payload of symbols and its chunk bit counts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "DCZ's compiled core (formats/_native).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
