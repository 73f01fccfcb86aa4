/*
 * The protobuf wire format, read: the primitives both compiled decoders share
 * (_otlp.c for traces, _metrics.c for metrics). Every function answers a status: OK,
 * ERROR for bytes that cannot be protobuf, FALLBACK for bytes that are legal but that the
 * decoders leave to upb (which then refuses them or reads them), DONE at the end of a
 * field search. check_message checks the parts a decoder does not read as upb would.
 */
#ifndef INFERWATCH_WIRE_H
#define INFERWATCH_WIRE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Why decoding stopped: FALLBACK means "take the upb path" (which refuses the body if it is
 * malformed); NOT_PLAIN, only from vllm_row, "decode this span as a Span instead"; DONE,
 * only from next_len_field, "no more such fields". */
enum { OK = 0, FALLBACK = 1, ERROR = 2, NOT_PLAIN = 3, DONE = 4 };

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

static inline int read_long_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return ERROR;
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return OK;
        }
    }
    return ERROR;
}

/* Most varints (tags, lengths of short strings) are one byte: that case inline. */
static inline int read_varint(Reader *r, uint64_t *out) {
    if (r->p < r->end && *r->p < 0x80) {
        *out = *r->p++;
        return OK;
    }
    return read_long_varint(r, out);
}

static inline int read_tag(Reader *r, uint32_t *field, int *wire_type) {
    uint64_t tag;
    if (read_varint(r, &tag) != OK)
        return ERROR;
    if (tag >> 32)
        return ERROR; /* field numbers stop at 2**29 - 1 */
    *field = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    if (*field == 0 || *field >= (1u << 29))
        return ERROR;
    return OK;
}

static inline int read_len(Reader *r, Reader *sub) {
    uint64_t n;
    if (read_varint(r, &n) != OK)
        return ERROR;
    if (n > (uint64_t)(r->end - r->p))
        return ERROR;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return OK;
}

/* Moves past `n` bytes, if there are that many. */
static inline int advance(Reader *r, Py_ssize_t n) {
    if (r->end - r->p < n)
        return ERROR;
    r->p += n;
    return OK;
}

/* A little-endian 64-bit value: one load where the machine is little-endian (the byte
 * loop took a quarter of the metrics scan). */
static inline int read_fixed64(Reader *r, uint64_t *out) {
    if (r->end - r->p < 8)
        return ERROR;
    uint64_t v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, r->p, 8);
#else
    v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | r->p[i];
#endif
    r->p += 8;
    *out = v;
    return OK;
}

static inline int skip(Reader *r, int wire_type) {
    uint64_t ignored;
    Reader sub;
    switch (wire_type) {
    case WT_VARINT:
        return read_varint(r, &ignored);
    case WT_I64:
        return advance(r, 8);
    case WT_LEN:
        return read_len(r, &sub);
    case WT_I32:
        return advance(r, 4);
    default:
        return FALLBACK; /* groups: legal, never written by OTLP senders */
    }
}

/* The number of characters in these bytes if they are valid UTF-8 as upb and Python's
 * strict decoder judge it (no overlong forms, no surrogates, nothing past U+10FFFF), else -1. */
static inline Py_ssize_t utf8_chars(const Reader *r) {
    const uint8_t *p = r->p, *end = r->end;
    Py_ssize_t chars = 0;
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            chars++;
            continue;
        }
        int len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return -1;
        }
        if (end - p < len)
            return -1;
        for (int k = 1; k < len; k++) {
            if ((p[k] & 0xc0) != 0x80)
                return -1;
            cp = cp << 6 | (p[k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        p += len;
        chars++;
    }
    return chars;
}

/* The fields of each message type, for checking the parts the decoder does not read as
 * upb would: one character per field number (index 0 unused). v varint, f fixed64,
 * i fixed32, s string, b bytes, - a field the type does not have (skipped); a capital is a
 * message of that type. The fields the decoders read themselves are listed too. */
static inline const char *fields_of(char type) {
    switch (type) {
    case 'Q': return "-R";                 /* ExportTraceServiceRequest */
    case 'R': return "-SPs";               /* ResourceSpans */
    case 'S': return "-KvE";               /* Resource */
    case 'P': return "-IXs";               /* ScopeSpans */
    case 'I': return "-ssKv";              /* InstrumentationScope */
    case 'X': return "-bbsbsvffKvVvNvTi";  /* Span */
    case 'T': return "--sv";               /* Status */
    case 'V': return "-fsKv";              /* Span.Event */
    case 'N': return "-bbsKvi";            /* Span.Link */
    case 'E': return "-ssss";              /* EntityRef */
    case 'D': return "--fffYfKv";          /* NumberDataPoint */
    case 'Y': return "--ffbbfK";           /* Exemplar */
    case 'K': return "-sAv";               /* KeyValue */
    case 'A': return "-svvfCLbv";          /* AnyValue */
    case 'C': return "-A";                 /* ArrayValue */
    case 'L': return "-K";                 /* KeyValueList */
    default: return "-";
    }
}

static inline int check_message(Reader r, char type, int depth);

/* Moves past one field of a message of `type` that the decoder does not read, checking it
 * as upb would (strings valid UTF-8, messages well formed). */
static inline int check_field(Reader *r, char type, uint32_t field, int wire_type, int depth) {
    const char *fields = fields_of(type);
    char kind = field < strlen(fields) ? fields[field] : '-';
    if (kind == '-')
        return skip(r, wire_type);
    int expected = kind == 'v' ? WT_VARINT : kind == 'f' ? WT_I64 : kind == 'i' ? WT_I32 : WT_LEN;
    if (wire_type != expected)
        return FALLBACK;
    if (expected != WT_LEN)
        return skip(r, wire_type);
    Reader sub;
    int status = read_len(r, &sub);
    if (status != OK || kind == 'b')
        return status;
    if (kind == 's')
        return utf8_chars(&sub) < 0 ? FALLBACK : OK;
    return check_message(sub, kind, depth + (kind == 'A'));
}

static inline int check_message(Reader r, char type, int depth) {
    uint32_t field;
    int wire_type, status;
    if (depth > MAX_DEPTH)
        return FALLBACK;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        if ((status = check_field(&r, type, field, wire_type, depth)) != OK)
            return status;
    }
    return OK;
}

/* The next field of `r` whose number has its bit set in `known` (all of them length-
 * delimited in the message read: FALLBACK if one comes with another wire type), the others
 * skipped: OK with `number` and `out` set, DONE at the end of `r`, or why it stopped. */
static inline int next_len_in(Reader *r, uint32_t known, uint32_t *number, Reader *out) {
    int wire_type, status;
    while (r->p < r->end) {
        if ((status = read_tag(r, number, &wire_type)) != OK)
            return status;
        if (*number < 32 && (known >> *number & 1)) {
            if (wire_type != WT_LEN)
                return FALLBACK;
            return read_len(r, out);
        }
        if ((status = skip(r, wire_type)) != OK)
            return status;
    }
    return DONE;
}

/* The next length-delimited field numbered `number` in `r`, other fields skipped: OK with
 * `out` set, DONE at the end of `r`, or why it stopped. */
static inline int next_len_field(Reader *r, uint32_t number, Reader *out) {
    uint32_t field;
    int wire_type, status;
    while (r->p < r->end) {
        if ((status = read_tag(r, &field, &wire_type)) != OK)
            return status;
        if (field == number && wire_type == WT_LEN)
            return read_len(r, out);
        if ((status = skip(r, wire_type)) != OK)
            return status;
    }
    return DONE;
}

#endif
