/* Stream coding 3 (formats/SPEC.md 3.4.2): adaptive binary range coding of byte symbols, compiled.
 *
 * Each w-bit symbol (w <= 8) goes MSB first down a tree of 2^w - 1 adaptive 12-bit probabilities (context 1:
 * the tree of the previous symbol, one per value, for w <= 6) through
 * LZMA's range coder (without its always-zero first byte). formats/range_coder.py is the reference and
 * the fallback: same bytes, same symbols, same statuses. The decoder reads only inside the payload (it
 * stops with PAST_END before reading past it), writes only `count` bytes of the caller's buffer, and
 * its arithmetic is unsigned 32-bit with code < range kept by construction once the first four bytes
 * are not 0xFFFFFFFF, so hostile payloads decode to some symbols or a status, never out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PROB_BITS 12
#define PROB_ONE (1u << PROB_BITS)
#define RC_TOP (1u << 24)
#define MAX_WIDTH 8
#define MIN_SHIFT 4
#define MAX_SHIFT 7
#define MAX_ORDER1_WIDTH 6 /* order 1: 2^w trees of 2^w probabilities, at most 4,096 */
#define MAX_PROBS (1 << (2 * MAX_ORDER1_WIDTH))
#define MAX_ENCODE_DECISIONS ((int64_t)1 << 24) /* the writer's streams: <= 65,536 symbols of <= 8 bits */

enum { RC_OK = 0, RC_PAST_END = 1, RC_NOT_FINAL = 2, RC_BAD_START = 3 };

static int args_ok(int width, int shift, int context) {
    if (width < 1 || width > MAX_WIDTH || shift < MIN_SHIFT || shift > MAX_SHIFT || context < 0 || context > 1 ||
        (context == 1 && width > MAX_ORDER1_WIDTH)) {
        PyErr_SetString(PyExc_ValueError, "range coder: width 1..8, shift 4..7, context 0 or 1 (1: width <= 6)");
        return 0;
    }
    return 1;
}

static void init_probs(uint16_t *probs) {
    for (int i = 0; i < MAX_PROBS; i++) probs[i] = PROB_ONE >> 1;
}

/* The decode loop: status, with *pos = payload bytes read. */
static int range_decode_run(const uint8_t *p, size_t n, int64_t count, int width, int shift, int context,
                            uint8_t *out, size_t *pos) {
    uint16_t probs[MAX_PROBS]; /* >= 2^8 (order 0) and 2^(2w) (order 1, w <= 6) */
    init_probs(probs);
    if (n < 4) { *pos = n; return RC_PAST_END; }
    uint32_t code = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    uint32_t range = 0xFFFFFFFFu;
    size_t at = 4;
    *pos = 4;
    if (code == 0xFFFFFFFFu) return RC_BAD_START;
    const unsigned top_node = 1u << width;
    unsigned prev = 0;
    for (int64_t k = 0; k < count; k++) {
        unsigned node = 1;
        uint16_t *tree = probs + (context ? prev << width : 0); /* prev < 2^w <= 2^6: inside probs */
        while (node < top_node) {
            uint32_t prob = tree[node];
            uint32_t bound = (range >> PROB_BITS) * prob;
            if (code < bound) {
                range = bound;
                tree[node] = (uint16_t)(prob + ((PROB_ONE - prob) >> shift));
                node <<= 1;
            } else {
                code -= bound;
                range -= bound;
                tree[node] = (uint16_t)(prob - (prob >> shift));
                node = (node << 1) | 1u;
            }
            while (range < RC_TOP) {
                if (at >= n) { *pos = at; return RC_PAST_END; }
                range <<= 8;
                code = (code << 8) | p[at++];
            }
        }
        prev = node - top_node;
        out[k] = (uint8_t)prev;
    }
    *pos = at;
    return at == n && code == 0 ? RC_OK : RC_NOT_FINAL;
}

/* range_decode(payload, count, width, shift, context, out_u8) -> (status, bytes read); out gets `count` symbols. */
PyObject *dcz_range_decode(PyObject *self, PyObject *args) {
    PyObject *payload_o, *out_o;
    long long count;
    int width, shift, context;
    if (!PyArg_ParseTuple(args, "OLiiiO", &payload_o, &count, &width, &shift, &context, &out_o)) return NULL;
    if (!args_ok(width, shift, context)) return NULL;
    Py_buffer payload, out;
    if (PyObject_GetBuffer(payload_o, &payload, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(out_o, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    if (count < 0 || (long long)out.len < count) {
        PyBuffer_Release(&out); PyBuffer_Release(&payload);
        PyErr_SetString(PyExc_ValueError, "range_decode: the output buffer is smaller than count");
        return NULL;
    }
    size_t pos = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS;
    status = range_decode_run((const uint8_t *)payload.buf, (size_t)payload.len, count, width, shift, context,
                              (uint8_t *)out.buf, &pos);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&out); PyBuffer_Release(&payload);
    return Py_BuildValue("in", status, (Py_ssize_t)pos);
}

typedef struct {
    uint64_t low;
    uint32_t range;
    uint8_t cache;
    int64_t pending; /* the cached byte plus the 0xFF bytes waiting behind it for a carry */
    int first;       /* LZMA's leading byte is always 0: it is not written */
    uint8_t *out;
    size_t n, cap;
    int overflow;
} Encoder;

static void shift_low(Encoder *e) {
    if (e->low < 0xFF000000u || e->low > 0xFFFFFFFFu) {
        uint8_t carry = (uint8_t)(e->low >> 32), byte = e->cache;
        do {
            if (e->first) e->first = 0;
            else if (e->n < e->cap) e->out[e->n++] = (uint8_t)(byte + carry);
            else e->overflow = 1; /* cannot happen (see the bound below); reported, never written */
            byte = 0xFF;
        } while (--e->pending);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static inline void encode_bit(Encoder *e, uint16_t *prob, int bit, int shift) {
    uint32_t p = *prob, bound = (e->range >> PROB_BITS) * p;
    if (bit) {
        e->low += bound;
        e->range -= bound;
        *prob = (uint16_t)(p - (p >> shift));
    } else {
        e->range = bound;
        *prob = (uint16_t)(p + ((PROB_ONE - p) >> shift));
    }
    while (e->range < RC_TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

static inline int64_t symbol_at(const void *buf, int size, int64_t i) {
    switch (size) {
    case 1: return ((const uint8_t *)buf)[i];
    case 2: return ((const uint16_t *)buf)[i];
    case 4: return ((const uint32_t *)buf)[i];
    default: return ((const int64_t *)buf)[i];
    }
}

/* range_encode(symbols, itemsize, width, shift, context) -> bytes: the coding-3 payload. Every decision shifts `low`
 * at most twice (the range never drops below 2^12 before renormalising), the flush five times, and each shift
 * emits at most one byte net, so 2 * decisions + 5 bytes bound it. */
PyObject *dcz_range_encode(PyObject *self, PyObject *args) {
    PyObject *symbols_o;
    int size, width, shift, context;
    if (!PyArg_ParseTuple(args, "Oiiii", &symbols_o, &size, &width, &shift, &context)) return NULL;
    if (!args_ok(width, shift, context)) return NULL;
    Py_buffer symbols;
    if (PyObject_GetBuffer(symbols_o, &symbols, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (!(size == 1 || size == 2 || size == 4 || size == 8) || symbols.len % size) {
        PyBuffer_Release(&symbols);
        PyErr_SetString(PyExc_ValueError, "range_encode: symbol size must be 1, 2, 4 or 8 bytes");
        return NULL;
    }
    int64_t count = symbols.len / size;
    if (count * width > MAX_ENCODE_DECISIONS) {
        PyBuffer_Release(&symbols);
        PyErr_SetString(PyExc_ValueError, "range_encode: more than 2^24 binary decisions");
        return NULL;
    }
    for (int64_t i = 0; i < count; i++) {
        int64_t v = symbol_at(symbols.buf, size, i);
        if (v < 0 || v >= ((int64_t)1 << width)) {
            PyBuffer_Release(&symbols);
            PyErr_SetString(PyExc_ValueError, "range_encode: a symbol does not fit the width");
            return NULL;
        }
    }
    Encoder e = {0, 0xFFFFFFFFu, 0, 1, 1, NULL, 0, (size_t)(2 * count * width + 8), 0};
    e.out = (uint8_t *)PyMem_Malloc(e.cap);
    if (!e.out) {
        PyBuffer_Release(&symbols);
        return PyErr_NoMemory();
    }
    uint16_t probs[MAX_PROBS];
    init_probs(probs);
    Py_BEGIN_ALLOW_THREADS;
    unsigned prev = 0;
    for (int64_t i = 0; i < count; i++) {
        unsigned sym = (unsigned)symbol_at(symbols.buf, size, i), node = 1;
        uint16_t *tree = probs + (context ? prev << width : 0);
        for (int b = width - 1; b >= 0; b--) {
            int bit = (sym >> b) & 1;
            encode_bit(&e, &tree[node], bit, shift);
            node = (node << 1) | (unsigned)bit;
        }
        prev = sym;
    }
    for (int i = 0; i < 5; i++) shift_low(&e);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&symbols);
    if (e.overflow) {
        PyMem_Free(e.out);
        PyErr_SetString(PyExc_SystemError, "range_encode: output bound exceeded");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)e.out, (Py_ssize_t)e.n);
    PyMem_Free(e.out);
    return result;
}
