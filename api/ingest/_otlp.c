/*
 * OTLP trace requests, read straight from the protobuf wire format.
 *
 * The pure-Python path (api/ingest/traces.py: _decode_spans, spans.py: AttributeDecoder)
 * walks the upb message objects, and most of its time goes to handing each attribute to
 * Python one wrapper object at a time. This module reads the same bytes once and builds
 * the same Python values directly: for every ResourceSpans, its resource attributes as a
 * dict and its spans as `Span` objects, attributes as dicts, strings cut to the same
 * length and counted the same way.
 *
 * The server hands it the request body without parsing it with upb first, so it checks
 * what upb checks on the way: every string field (read or not) is valid UTF-8, every
 * length fits, field numbers are legal. It reads only the encoding a protobuf serializer
 * writes. Anything else - malformed bytes, and legal but unusual encodings such as a
 * singular field twice (which protobuf merges), two members of AnyValue's oneof, a known
 * field with another wire type, groups, nesting deeper than MAX_DEPTH - makes it answer
 * None, and the caller lets upb parse the body (refusing it, or taking the Python path),
 * so the result never differs from it. tests/ingest/test_wire_decoder.py holds the two
 * paths to the same output.
 *
 * Given `rules`, it also turns plain vLLM spans into finished request rows (vllm_row,
 * the C twin of conventions/vllm.py + traces._row for spans those rules accept), so
 * the commonest span never becomes a Python object at all. Any span it is not sure of
 * is decoded as a Span for the Python rules instead.
 *
 * decode_traces(data: bytes, max_attribute_bytes: int, span_type: type, rules: tuple | None)
 *     -> (list[tuple[dict, list[Span | tuple]]], truncated: int) | None
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_wire.h"

#define CACHE_SLOTS 64
#define CACHE_MAX_LEN 96

/* Strings repeat from span to span at the same attribute position (the same keys in the
 * same order, often the same model name or finish reason), so each position remembers
 * its last key and last short string value and hands out the same str object when the
 * bytes match. Reused keys also keep their cached hash for the dict. */
typedef struct {
    Py_ssize_t len;
    char bytes[CACHE_MAX_LEN];
    PyObject *str;
} Slot;

/* The attribute keys vllm_row reads (conventions/common.py genai() and conventions/vllm.py). */
enum {
    K_INPUT, K_PROMPT, K_OUTPUT, K_COMPLETION, K_CACHE_READ, K_CACHE_READ_OLD, K_CACHED, K_N, K_SEQUENCES,
    K_CHOICES, K_MAX_TOKENS, K_TEMPERATURE, K_REQUEST_ID, K_RESPONSE_ID, K_RESPONSE_MODEL, K_REQUEST_MODEL,
    K_FINISH_REASONS, K_FINISH_REASON, K_QUEUE, K_TTFT, K_PREFILL, K_DECODE, K_E2E, N_KEYS
};

static const char *const KEYS[N_KEYS] = {
    "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cached_tokens", "gen_ai.request.n",
    "gen_ai.usage.num_sequences", "gen_ai.request.choice.count", "gen_ai.request.max_tokens",
    "gen_ai.request.temperature", "gen_ai.request.id", "gen_ai.response.id", "gen_ai.response.model",
    "gen_ai.request.model", "gen_ai.response.finish_reasons", "gen_ai.response.finish_reason",
    "gen_ai.latency.time_in_queue", "gen_ai.latency.time_to_first_token", "gen_ai.latency.time_in_model_prefill",
    "gen_ai.latency.time_in_model_decode", "gen_ai.latency.e2e",
};

/* Which of KEYS the key at an attribute position was last time (-1: none of them). */
typedef struct {
    Py_ssize_t len;
    char bytes[CACHE_MAX_LEN];
    int index;
} KeyHint;

typedef struct {
    Py_ssize_t max_chars;
    long long truncated;
    Slot keys[CACHE_SLOTS];
    Slot values[CACHE_SLOTS];
    KeyHint hints[CACHE_SLOTS];
    Slot model;
    Slot finish;
} State;


/* A new reference to the str for these UTF-8 bytes; NULL with an exception set, or NULL
 * with *status = FALLBACK when the bytes are not valid UTF-8 (upb would refuse them). */
static PyObject *text(const Reader *r, int *status) {
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->p, r->end - r->p, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        *status = FALLBACK;
    }
    return s;
}

static int slot_holds(const Slot *slot, const Reader *r) {
    Py_ssize_t len = r->end - r->p;
    return slot != NULL && slot->str != NULL && slot->len == len && memcmp(slot->bytes, r->p, len) == 0;
}

static void remember(Slot *slot, const Reader *r, PyObject *s) {
    Py_ssize_t len = r->end - r->p;
    if (slot == NULL || len > CACHE_MAX_LEN)
        return;
    Py_XDECREF(slot->str);
    memcpy(slot->bytes, r->p, len);
    slot->len = len;
    Py_INCREF(s);
    slot->str = s;
}

static PyObject *cached_text(Slot *slot, const Reader *r, int *status) {
    if (slot_holds(slot, r))
        return Py_NewRef(slot->str);
    PyObject *s = text(r, status);
    if (s != NULL)
        remember(slot, r, s);
    return s;
}

/* A string attribute value, cut to max_chars characters (counted), as the Python path does.
 * Only values that were not cut are remembered, so a reused value needs no count. */
static PyObject *string_value(State *st, Slot *slot, const Reader *r, int *status) {
    if (slot_holds(slot, r))
        return Py_NewRef(slot->str);
    PyObject *s = text(r, status);
    if (s == NULL)
        return NULL;
    if (PyUnicode_GET_LENGTH(s) > st->max_chars) {
        PyObject *cut = PyUnicode_Substring(s, 0, st->max_chars);
        Py_DECREF(s);
        st->truncated++;
        return cut;
    }
    remember(slot, r, s);
    return s;
}

static PyObject *hex(const Reader *r) {
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t n = r->end - r->p;
    PyObject *s = PyUnicode_New(n * 2, 127);
    if (s == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[2 * i] = digits[r->p[i] >> 4];
        out[2 * i + 1] = digits[r->p[i] & 15];
    }
    return s;
}

/* An AnyValue's member: which one is set (0: none), and its bytes or scalar. */
typedef struct {
    uint32_t member;
    Reader bytes;
    uint64_t scalar;
} Any;

static int read_any(Reader r, Any *out) {
    uint32_t field;
    int wire_type, status, members = 0;
    out->member = 0;
    out->bytes.p = out->bytes.end = NULL;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        if (field > 8) {
            if ((status = skip(&r, wire_type)) != OK)
                return status;
            continue;
        }
        int expected = field == 4 ? WT_I64 : (field == 1 || field == 5 || field == 6 || field == 7) ? WT_LEN : WT_VARINT;
        if (wire_type != expected || ++members > 1)
            return FALLBACK; /* a oneof set twice: protobuf keeps the last, merging messages */
        out->member = field;
        if (expected == WT_LEN)
            status = read_len(&r, &out->bytes);
        else if (expected == WT_I64)
            status = read_fixed64(&r, &out->scalar);
        else
            status = read_varint(&r, &out->scalar);
        if (status != OK)
            return status;
    }
    return OK;
}

/* A KeyValue's key and value bytes. */
typedef struct {
    Reader key, value;
    int have_key, have_value;
} KeyValue;

static int read_key_value(Reader r, KeyValue *kv, int depth) {
    uint32_t field;
    int wire_type, status;
    kv->have_key = kv->have_value = 0;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        if (field == 1 || field == 2) {
            if (wire_type != WT_LEN || (field == 1 ? kv->have_key : kv->have_value))
                return FALLBACK;
            if ((status = read_len(&r, field == 1 ? &kv->key : &kv->value)) != OK)
                return status;
            if (field == 1)
                kv->have_key = 1;
            else
                kv->have_value = 1;
        } else if ((status = check_field(&r, 'K', field, wire_type, depth)) != OK) {
            return status;
        }
    }
    return OK;
}

/* Marks an AnyValue with no member set: the key is left out, an array item is None. */
static PyObject UNSET_MARK;
#define UNSET (&UNSET_MARK)

static int decode_attributes(State *st, PyObject *dict, Reader *r, char type, int depth, int cached);

static PyObject *decode_any(State *st, Reader r, int depth, Slot *slot, int *status) {
    if (depth > MAX_DEPTH) {
        *status = FALLBACK;
        return NULL;
    }
    Any any;
    if ((*status = read_any(r, &any)) != OK)
        return NULL;
    Reader chosen = any.bytes;
    switch (any.member) {
    case 0:
        return UNSET;
    case 1:
        return string_value(st, slot, &chosen, status);
    case 2:
        return PyBool_FromLong(any.scalar != 0);
    case 3:
        return PyLong_FromLongLong((long long)(int64_t)any.scalar);
    case 4: {
        double d;
        memcpy(&d, &any.scalar, sizeof d);
        return PyFloat_FromDouble(d);
    }
    case 5: {
        uint32_t field;
        int wire_type;
        PyObject *list = PyList_New(0);
        if (list == NULL)
            return NULL;
        while (chosen.p < chosen.end) {
            if ((*status = read_tag(&chosen, &field, &wire_type)) != OK)
                goto array_fail;
            if (field != 1) {
                if ((*status = skip(&chosen, wire_type)) != OK)
                    goto array_fail;
                continue;
            }
            if (wire_type != WT_LEN) {
                *status = FALLBACK;
                goto array_fail;
            }
            Reader item;
            if ((*status = read_len(&chosen, &item)) != OK)
                goto array_fail;
            PyObject *value = decode_any(st, item, depth + 1, NULL, status);
            if (value == NULL)
                goto array_fail;
            if (value == UNSET) {
                value = Py_None;
                Py_INCREF(value);
            }
            int failed = PyList_Append(list, value);
            Py_DECREF(value);
            if (failed)
                goto array_fail;
        }
        return list;
    array_fail:
        Py_DECREF(list);
        return NULL;
    }
    case 6: {
        PyObject *dict = PyDict_New();
        if (dict == NULL)
            return NULL;
        if ((*status = decode_attributes(st, dict, &chosen, 'L', depth + 1, 0)) != OK) {
            Py_DECREF(dict);
            return NULL;
        }
        return dict;
    }
    case 7:
        return hex(&chosen);
    default: /* 8: string_value_strindex, an int32 */
        return PyLong_FromLong((long)(int32_t)any.scalar);
    }
}

/* One KeyValue into `dict` (a value with no member set leaves the key out). */
static int decode_key_value(State *st, PyObject *dict, Reader r, int depth, Py_ssize_t position, int cached) {
    KeyValue kv;
    int status = read_key_value(r, &kv, depth);
    if (status != OK)
        return status;
    if (kv.have_key && utf8_chars(&kv.key) < 0)
        return FALLBACK; /* checked here too: a key left out is never decoded */
    if (!kv.have_value)
        return OK;
    int use_cache = cached && position < CACHE_SLOTS;
    PyObject *v = decode_any(st, kv.value, depth, use_cache ? &st->values[position] : NULL, &status);
    if (v == NULL)
        return status == OK ? ERROR : status;
    if (v == UNSET)
        return OK;
    PyObject *k;
    if (kv.have_key) {
        k = cached_text(use_cache ? &st->keys[position] : NULL, &kv.key, &status);
    } else {
        k = PyUnicode_New(0, 127);
    }
    if (k == NULL) {
        Py_DECREF(v);
        return status == OK ? ERROR : status;
    }
    int failed = PyDict_SetItem(dict, k, v);
    Py_DECREF(k);
    Py_DECREF(v);
    return failed ? ERROR : OK;
}

/* Every KeyValue (field 1) of the message of `type` in `r` into `dict`: a Resource or a
 * KeyValueList. */
static int decode_attributes(State *st, PyObject *dict, Reader *r, char type, int depth, int cached) {
    uint32_t field;
    int wire_type, status;
    Py_ssize_t position = 0;
    while (r->p < r->end) {
        if ((status = read_tag(r, &field, &wire_type)) != OK)
            return status;
        if (field != 1) {
            if ((status = check_field(r, type, field, wire_type, depth)) != OK)
                return status;
            continue;
        }
        if (wire_type != WT_LEN)
            return FALLBACK;
        Reader kv;
        if ((status = read_len(r, &kv)) != OK)
            return status;
        if ((status = decode_key_value(st, dict, kv, depth, position++, cached)) != OK)
            return status;
    }
    return OK;
}

/* A span's singular fields, read in one pass that also checks the fields no one reads.
 * Its attributes (field 9) are read after, by next_attribute. */
typedef struct {
    Reader trace, span, parent, name, message;
    uint64_t kind, start, end;
    int32_t code;
} SpanWire;

static int read_status(Reader r, SpanWire *s) {
    uint32_t field;
    int wire_type, status;
    int seen_code = 0, seen_message = 0;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        if (field == 2) {
            if (wire_type != WT_LEN || seen_message++)
                return FALLBACK;
            if ((status = read_len(&r, &s->message)) != OK)
                return status;
            if (utf8_chars(&s->message) < 0)
                return FALLBACK;
        } else if (field == 3) {
            uint64_t v;
            if (wire_type != WT_VARINT || seen_code++)
                return FALLBACK;
            if ((status = read_varint(&r, &v)) != OK)
                return status;
            s->code = (int32_t)v;
        } else if ((status = skip(&r, wire_type)) != OK) {
            return status;
        }
    }
    return OK;
}

static int read_span(Reader r, SpanWire *s) {
    uint32_t field, seen = 0;
    int wire_type, status;
    memset(s, 0, sizeof *s);
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        Reader *bytes = NULL;
        uint64_t *number = NULL;
        int expected = WT_LEN;
        switch (field) {
        case 1: bytes = &s->trace; break;
        case 2: bytes = &s->span; break;
        case 4: bytes = &s->parent; break;
        case 5: bytes = &s->name; break;
        case 6: number = &s->kind; expected = WT_VARINT; break;
        case 7: number = &s->start; expected = WT_I64; break;
        case 8: number = &s->end; expected = WT_I64; break;
        case 9: /* attributes: read later, only checked to be well formed here */
        case 15: break; /* status */
        default:
            if ((status = check_field(&r, 'X', field, wire_type, 0)) != OK)
                return status;
            continue;
        }
        if (wire_type != expected)
            return FALLBACK;
        if (field != 9) {
            if (seen & (1u << field))
                return FALLBACK; /* a singular field twice */
            seen |= 1u << field;
        }
        if (expected == WT_VARINT)
            status = read_varint(&r, number);
        else if (expected == WT_I64)
            status = read_fixed64(&r, number);
        else {
            Reader sub;
            status = read_len(&r, &sub);
            if (status == OK && bytes != NULL)
                *bytes = sub;
            else if (status == OK && field == 15)
                status = read_status(sub, s);
        }
        if (status != OK)
            return status;
    }
    if (s->name.p != NULL && utf8_chars(&s->name) < 0)
        return FALLBACK;
    return OK;
}

/* The next attribute (a KeyValue's bytes) of a span that read_span accepted, so the reads
 * cannot fail: 0 at the end. */
static int next_attribute(Reader *r, Reader *kv) {
    uint32_t field = 0;
    int wire_type = WT_VARINT;
    while (r->p < r->end) {
        if (read_tag(r, &field, &wire_type) != OK)
            return 0;
        if (field == 9)
            return read_len(r, kv) == OK;
        if (skip(r, wire_type) != OK)
            return 0;
    }
    return 0;
}

/* Span fields, in Span's constructor order. */
enum { F_TRACE, F_SPAN, F_PARENT, F_NAME, F_KIND, F_START, F_END, F_ATTRS, F_CODE, F_MESSAGE, N_FIELDS };

static PyObject *bytes_of(const Reader *r) {
    return PyBytes_FromStringAndSize((const char *)r->p, r->p == NULL ? 0 : r->end - r->p);
}

static PyObject *str_of(const Reader *r, int *status) {
    if (r->p == NULL)
        return PyUnicode_New(0, 127);
    return text(r, status);
}

static PyObject *decode_span(State *st, Reader r, PyObject *span_type, int *status) {
    SpanWire s;
    PyObject *f[N_FIELDS] = {NULL};
    PyObject *span = NULL;
    if ((*status = read_span(r, &s)) != OK)
        return NULL;
    /* Strings were found valid by read_span: a NULL here is an exception (memory). */
    *status = ERROR;
    if ((f[F_TRACE] = bytes_of(&s.trace)) == NULL || (f[F_SPAN] = bytes_of(&s.span)) == NULL ||
        (f[F_PARENT] = bytes_of(&s.parent)) == NULL || (f[F_NAME] = str_of(&s.name, status)) == NULL ||
        (f[F_KIND] = PyLong_FromLong((long)(int32_t)s.kind)) == NULL ||
        (f[F_START] = PyLong_FromUnsignedLongLong(s.start)) == NULL ||
        (f[F_END] = PyLong_FromUnsignedLongLong(s.end)) == NULL || (f[F_ATTRS] = PyDict_New()) == NULL ||
        (f[F_CODE] = PyLong_FromLong(s.code)) == NULL || (f[F_MESSAGE] = str_of(&s.message, status)) == NULL)
        goto done;
    Reader kv;
    while (next_attribute(&r, &kv)) {
        /* Positions count across the span's attribute fields. */
        Py_ssize_t position = PyDict_GET_SIZE(f[F_ATTRS]);
        if ((*status = decode_key_value(st, f[F_ATTRS], kv, 0, position, 1)) != OK)
            goto done;
    }
    span = PyObject_Vectorcall(span_type, f, N_FIELDS, NULL);
    *status = span == NULL ? ERROR : OK;
done:
    for (int i = 0; i < N_FIELDS; i++)
        Py_XDECREF(f[i]);
    return span;
}

/* --- Plain vLLM spans straight to rows ---------------------------------------------------
 *
 * The C twin of conventions/vllm.py (with genai() of conventions/common.py) and of
 * traces._row, for the spans those rules accept: a span named `llm_request` whose
 * attributes are scalars, whose latencies are numbers within a day (so no stage child is
 * read), token counts whole numbers in range, text fields strings. Every other span, and
 * every span the Python rules would reject, is NOT_PLAIN: decoded as a Span, so the
 * Python rules judge it and give the reason. tests/ingest/test_span_rows.py holds the
 * two to the same rows.
 */

#define MAX_REQUEST_SECONDS 86400.0
#define FLOAT32_MAX 3.4028234663852886e38
#define UINT16_LIMIT 65535
#define UINT32_LIMIT 4294967295LL
#define N_COLUMNS 24

/* What the caller's rules say: (resource_of, framework, latest_ns, oldest_ns, max_spans),
 * and the values of the resource whose spans are being read. */
typedef struct {
    PyObject *resource_of, *framework;
    long long latest_ns, oldest_ns;
    Py_ssize_t max_spans;
    PyObject *cluster, *host, *deployment, *model, *gpu_uuids;
} Rules;

static int read_rules(PyObject *tuple, Rules *rules) {
    PyObject *resource_of, *framework;
    if (!PyArg_ParseTuple(tuple, "OULLn:rules", &resource_of, &framework, &rules->latest_ns, &rules->oldest_ns,
                          &rules->max_spans)) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return ERROR;
        PyErr_Clear(); /* times past 64 bits: the Python path judges them */
        return FALLBACK;
    }
    rules->resource_of = Py_NewRef(resource_of);
    rules->framework = Py_NewRef(framework);
    return OK;
}

static void release_rules(Rules *rules) {
    Py_CLEAR(rules->resource_of);
    Py_CLEAR(rules->framework);
    Py_CLEAR(rules->cluster);
    Py_CLEAR(rules->host);
    Py_CLEAR(rules->deployment);
    Py_CLEAR(rules->model);
    Py_CLEAR(rules->gpu_uuids);
}

/* resource_of(attrs): the values every row of this resource carries. */
static int use_resource(Rules *rules, PyObject *attrs) {
    PyObject *resource = PyObject_CallOneArg(rules->resource_of, attrs);
    if (resource == NULL)
        return ERROR;
    Py_XSETREF(rules->cluster, PyObject_GetAttrString(resource, "cluster"));
    Py_XSETREF(rules->host, PyObject_GetAttrString(resource, "host"));
    Py_XSETREF(rules->deployment, PyObject_GetAttrString(resource, "deployment"));
    Py_XSETREF(rules->model, PyObject_GetAttrString(resource, "model"));
    Py_XSETREF(rules->gpu_uuids, PyObject_GetAttrString(resource, "gpu_uuids"));
    Py_DECREF(resource);
    int ok = rules->cluster && rules->host && rules->deployment && rules->model && rules->gpu_uuids;
    return ok ? OK : ERROR;
}

/* Which spans may become rows by themselves: in traces.normalise_traces a span's row
 * depends on other spans only through its key (trace id + span id: the first accepted
 * span of a key wins) and its span id (stage spans hang under it). So a span qualifies
 * only if no other span of the request has its key, and no other span of its resource
 * has its span id or names it as parent. */
typedef struct {
    uint8_t *plain;
    Py_ssize_t count, next;
} Plan;

typedef struct {
    Reader span, parent;
    Py_ssize_t group;
    uint8_t key[24]; /* trace id + span id, when they come to 24 bytes */
    uint8_t has_key, candidate;
} Ids;

static int is_zero(const Reader *r) {
    for (const uint8_t *p = r->p; p < r->end; p++)
        if (*p)
            return 0;
    return 1;
}

static int scan_ids(Reader r, Ids *ids) {
    uint32_t field;
    int wire_type, status;
    Reader trace = {NULL, NULL};
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        if (field != 1 && field != 2 && field != 4) {
            if ((status = skip(&r, wire_type)) != OK)
                return status;
            continue;
        }
        Reader sub;
        if (wire_type != WT_LEN)
            return FALLBACK;
        if ((status = read_len(&r, &sub)) != OK)
            return status;
        *(field == 1 ? &trace : field == 2 ? &ids->span : &ids->parent) = sub;
    }
    Py_ssize_t trace_len = trace.end - trace.p, span_len = ids->span.end - ids->span.p;
    ids->has_key = trace_len + span_len == 24;
    if (ids->has_key) {
        if (trace_len)
            memcpy(ids->key, trace.p, trace_len);
        if (span_len)
            memcpy(ids->key + trace_len, ids->span.p, span_len);
    }
    ids->candidate = trace_len == 16 && span_len == 8 && !is_zero(&trace) && !is_zero(&ids->span);
    return OK;
}

/* Every span's ids, in order; FALLBACK past max_spans (upb counts them and refuses). */

static int collect_ids(Reader r, const Rules *rules, Ids **out, Py_ssize_t *count) {
    int status;
    Py_ssize_t n = 0, cap = 0, group = 0;
    Ids *ids = NULL;
    Reader rs, ss, span;
    /* ResourceSpans (1) → ScopeSpans (2) → Span (2) */
    while ((status = next_len_field(&r, 1, &rs)) == OK) {
        while ((status = next_len_field(&rs, 2, &ss)) == OK) {
            while ((status = next_len_field(&ss, 2, &span)) == OK) {
                if (n >= rules->max_spans) {
                    status = FALLBACK;
                    goto fail;
                }
                if (n == cap) {
                    cap = cap ? cap * 2 : 1024;
                    Ids *grown = PyMem_Realloc(ids, cap * sizeof *ids);
                    if (grown == NULL) {
                        PyErr_NoMemory();
                        status = ERROR;
                        goto fail;
                    }
                    ids = grown;
                }
                memset(&ids[n], 0, sizeof *ids);
                ids[n].group = group;
                if ((status = scan_ids(span, &ids[n++])) != OK)
                    goto fail;
            }
            if (status != DONE)
                goto fail;
        }
        if (status != DONE)
            goto fail;
        group++;
    }
    if (status != DONE)
        goto fail;
    *out = ids;
    *count = n;
    return OK;
fail:
    PyMem_Free(ids);
    return status;
}

static Py_hash_t key_hash(const Ids *a) { return _Py_HashBytes(a->key, 24); }

static Py_hash_t id_hash(const Reader *id, Py_ssize_t group) {
    return _Py_HashBytes(id->p, id->end - id->p) ^ (Py_hash_t)(group * 0x9E3779B97F4A7C15ULL);
}

static int same_bytes(const Reader *a, const Reader *b) {
    return a->end - a->p == b->end - b->p && memcmp(a->p, b->p, a->end - a->p) == 0;
}

/* Open addressing over span indexes (+1; 0 is empty): the slot holding an index whose
 * entry `matches`, or the empty slot where the probe ends. */
typedef int (*Matches)(const Ids *ids, Py_ssize_t entry, const void *key, Py_ssize_t group);

static Py_ssize_t *probe(Py_ssize_t *table, size_t mask, Py_hash_t hash, const Ids *ids, Matches matches,
                         const void *key, Py_ssize_t group) {
    size_t i = (size_t)hash & mask;
    while (table[i] && !matches(ids, table[i] - 1, key, group))
        i = (i + 1) & mask;
    return &table[i];
}

static int key_matches(const Ids *ids, Py_ssize_t entry, const void *key, Py_ssize_t group) {
    (void)group;
    return memcmp(ids[entry].key, key, 24) == 0;
}

static int id_matches(const Ids *ids, Py_ssize_t entry, const void *id, Py_ssize_t group) {
    return ids[entry].group == group && same_bytes(&ids[entry].span, id);
}

static int make_plan(Reader r, const Rules *rules, Plan *plan) {
    Ids *ids = NULL;
    Py_ssize_t n = 0;
    int status = collect_ids(r, rules, &ids, &n);
    if (status != OK)
        return status;
    size_t size = 16;
    while (size < 2 * (size_t)n)
        size *= 2;
    Py_ssize_t *table = PyMem_Calloc(size, sizeof *table);
    plan->plain = PyMem_Calloc(n ? n : 1, 1);
    plan->count = n;
    if (table == NULL || plan->plain == NULL) {
        PyErr_NoMemory();
        status = ERROR;
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        plan->plain[i] = ids[i].candidate;
    for (Py_ssize_t i = 0; i < n; i++) { /* a key twice in the request */
        if (!ids[i].has_key)
            continue;
        Py_ssize_t *slot = probe(table, size - 1, key_hash(&ids[i]), ids, key_matches, ids[i].key, 0);
        if (*slot)
            plan->plain[*slot - 1] = plan->plain[i] = 0;
        else
            *slot = i + 1;
    }
    memset(table, 0, size * sizeof *table);
    for (Py_ssize_t i = 0; i < n; i++) { /* a span id twice in one resource */
        if (ids[i].span.end - ids[i].span.p != 8)
            continue;
        Py_ssize_t *slot =
            probe(table, size - 1, id_hash(&ids[i].span, ids[i].group), ids, id_matches, &ids[i].span, ids[i].group);
        if (*slot)
            plan->plain[*slot - 1] = plan->plain[i] = 0;
        else
            *slot = i + 1;
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* a span id named as a parent */
        if (ids[i].parent.end - ids[i].parent.p != 8)
            continue;
        Py_ssize_t *slot = probe(table, size - 1, id_hash(&ids[i].parent, ids[i].group), ids, id_matches,
                                 &ids[i].parent, ids[i].group);
        if (*slot)
            plan->plain[*slot - 1] = 0;
    }
done:
    PyMem_Free(table);
    PyMem_Free(ids);
    return status;
}

/* One attribute value as vllm_row keeps it: 0 absent, 's' string, 'i' int, 'd' double,
 * 'x' anything else (bool, bytes, string index). */
typedef struct {
    char type;
    Reader bytes;
    Py_ssize_t chars;
    int64_t i;
    double d;
} Value;

/* Which of KEYS these key bytes are (-1: none), or -2 if they are not valid UTF-8. */
static int key_index(State *st, const Reader *key, Py_ssize_t position) {
    Py_ssize_t len = key->end - key->p;
    KeyHint *hint = position < CACHE_SLOTS && len <= CACHE_MAX_LEN ? &st->hints[position] : NULL;
    if (hint != NULL && hint->len == len && memcmp(hint->bytes, key->p, len) == 0)
        return hint->index; /* bytes already found valid */
    if (utf8_chars(key) < 0)
        return -2;
    int index = -1;
    for (int k = 0; k < N_KEYS && index < 0; k++)
        if ((Py_ssize_t)strlen(KEYS[k]) == len && memcmp(KEYS[k], key->p, len) == 0)
            index = k;
    if (hint != NULL) {
        memcpy(hint->bytes, key->p, len);
        hint->len = len;
        hint->index = index;
    }
    return index;
}

/* The span's attributes into `values` (by KEYS index; the last of a key twice wins, as in
 * a dict), counting the strings that would be cut. */
static int read_values(State *st, Reader r, Value *values, long long *truncated) {
    Reader bytes;
    Py_ssize_t position = 0;
    while (next_attribute(&r, &bytes)) {
        KeyValue kv;
        Any any;
        int status = read_key_value(bytes, &kv, 0);
        if (status != OK)
            return status;
        int index = -1;
        if (kv.have_key && (index = key_index(st, &kv.key, position)) == -2)
            return FALLBACK;
        position++;
        if (!kv.have_value)
            continue;
        if ((status = read_any(kv.value, &any)) != OK)
            return status;
        Value v = {0};
        switch (any.member) {
        case 0:
            continue; /* no member: the key is left out, an earlier value stays */
        case 1:
            v.type = 's';
            v.bytes = any.bytes;
            if ((v.chars = utf8_chars(&any.bytes)) < 0)
                return FALLBACK;
            if (v.chars > st->max_chars)
                (*truncated)++;
            break;
        case 3:
            v.type = 'i';
            v.i = (int64_t)any.scalar;
            break;
        case 4:
            v.type = 'd';
            memcpy(&v.d, &any.scalar, sizeof v.d);
            break;
        case 5:
        case 6:
            return NOT_PLAIN; /* arrays and kvlists: the Python path cuts and counts their strings */
        default:
            v.type = 'x';
        }
        if (index >= 0)
            values[index] = v;
    }
    return OK;
}

/* count(): the first of `keys` present, as a whole number within `limit`; Py_None if none is. */
static PyObject *count_of(const Value *values, const int *keys, int n, long long limit, int *status) {
    for (int k = 0; k < n; k++) {
        const Value *v = &values[keys[k]];
        if (v->type == 0)
            continue;
        if (v->type == 'i' && v->i >= 0 && v->i <= limit)
            return PyLong_FromLongLong(v->i);
        if (v->type == 'd' && v->d >= 0 && v->d <= (double)limit && v->d == floor(v->d))
            return PyLong_FromLongLong((long long)v->d);
        *status = NOT_PLAIN;
        return NULL;
    }
    return Py_NewRef(Py_None);
}

/* number(): the value of `key` as a float within [low, high]; 0 if absent, NOT_PLAIN else. */
static int number_of(const Value *v, double low, double high, double *out) {
    if (v->type == 0)
        return 0;
    double d = v->type == 'i' ? (double)v->i : v->d;
    if ((v->type != 'i' && v->type != 'd') || !(low <= d && d <= high))
        return NOT_PLAIN;
    *out = d;
    return 1;
}

/* text(): the first of two keys holding a non-empty string (after the cut), or -1. */
static int text_key(const State *st, const Value *values, int first, int second) {
    int keys[2] = {first, second};
    for (int k = 0; k < 2; k++) {
        const Value *v = &values[keys[k]];
        if (v->type == 0 || (v->type == 's' && (v->chars == 0 || st->max_chars == 0)))
            continue;
        return v->type == 's' ? keys[k] : -2;
    }
    return -1;
}

/* The str of a value's bytes cut to `limit` characters; uncut ones are remembered in `slot`. */
static PyObject *cut_text(Slot *slot, const Value *v, Py_ssize_t limit) {
    if (v->chars <= limit && slot_holds(slot, &v->bytes))
        return Py_NewRef(slot->str);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)v->bytes.p, v->bytes.end - v->bytes.p, NULL);
    if (s == NULL || v->chars <= limit) {
        if (s != NULL)
            remember(slot, &v->bytes, s);
        return s;
    }
    Py_SETREF(s, PyUnicode_Substring(s, 0, limit));
    return s;
}

static int is_space(uint8_t c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f); }

static int is_json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* common._finish_text of an ASCII string: stripped, and a JSON list of plain strings
 * joined by commas, cut to 64. NOT_PLAIN for anything else (escapes, numbers, bad JSON). */
static PyObject *finish_text(const uint8_t *p, Py_ssize_t n, int *status) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] >= 0x80) {
            *status = NOT_PLAIN;
            return NULL;
        }
    }
    while (n > 0 && is_space(p[0]))
        p++, n--;
    while (n > 0 && is_space(p[n - 1]))
        n--;
    if (n == 0 || p[0] != '[')
        return PyUnicode_FromStringAndSize((const char *)p, n < 64 ? n : 64);
    char out[64];
    Py_ssize_t len = 0, i = 1, words = 0;
    while (i < n && is_json_space(p[i]))
        i++;
    if (i < n && p[i] == ']') {
        i++;
    } else {
        for (;;) {
            if (i >= n || p[i] != '"')
                goto unsure;
            if (words++ && len < 64)
                out[len++] = ',';
            for (i++; i < n && p[i] != '"'; i++) {
                if (p[i] < 0x20 || p[i] == '\\')
                    goto unsure;
                if (len < 64)
                    out[len++] = (char)p[i];
            }
            if (i++ >= n)
                goto unsure;
            while (i < n && is_json_space(p[i]))
                i++;
            if (i < n && p[i] == ']') {
                i++;
                break;
            }
            if (i >= n || p[i] != ',')
                goto unsure;
            for (i++; i < n && is_json_space(p[i]); i++) {
            }
        }
    }
    if (i == n)
        return PyUnicode_FromStringAndSize(out, len);
unsure:
    *status = NOT_PLAIN;
    return NULL;
}

/* common.finish_reason: `gen_ai.response.finish_reasons`, else `…finish_reason`. */
static PyObject *finish_of(State *st, const Value *values, int *status) {
    const Value *v = values[K_FINISH_REASONS].type ? &values[K_FINISH_REASONS] : &values[K_FINISH_REASON];
    if (v->type == 0)
        return PyUnicode_New(0, 127);
    if (v->type != 's') {
        *status = NOT_PLAIN;
        return NULL;
    }
    Py_ssize_t n = v->bytes.end - v->bytes.p;
    int cut = v->chars > st->max_chars;
    if (!cut && slot_holds(&st->finish, &v->bytes))
        return Py_NewRef(st->finish.str);
    /* Cut to max_chars characters first; ASCII, or finish_text refuses, so bytes are characters. */
    PyObject *s = finish_text(v->bytes.p, cut ? st->max_chars : n, status);
    if (s != NULL && !cut)
        remember(&st->finish, &v->bytes, s);
    return s;
}

static const int PROMPT_KEYS[] = {K_INPUT, K_PROMPT};
static const int OUTPUT_KEYS[] = {K_OUTPUT, K_COMPLETION};
static const int CACHED_KEYS[] = {K_CACHE_READ, K_CACHE_READ_OLD, K_CACHED};
static const int N_KEYS_[] = {K_N, K_SEQUENCES, K_CHOICES};
static const int MAX_TOKENS_KEYS[] = {K_MAX_TOKENS};

static PyObject *seconds(int present, double value) {
    return present ? PyFloat_FromDouble(value) : Py_NewRef(Py_None);
}

/* The row of a plain vLLM span, in traces.COLUMNS order; NULL with NOT_PLAIN for any
 * other span, or NULL with FALLBACK or ERROR (as decode_span would answer). */
static PyObject *vllm_row(State *st, Reader r, const Rules *rules, int *status) {
    SpanWire s;
    Value values[N_KEYS] = {{0}};
    long long truncated = 0;
    PyObject *c[N_COLUMNS] = {NULL};
    PyObject *row = NULL;
    static const char NAME[] = "llm_request";
    if ((*status = read_span(r, &s)) != OK)
        return NULL;
    *status = NOT_PLAIN;
    if (s.name.end - s.name.p != (Py_ssize_t)sizeof NAME - 1 || memcmp(s.name.p, NAME, sizeof NAME - 1) != 0)
        return NULL;
    if ((*status = read_values(st, r, values, &truncated)) != OK)
        return NULL;
    *status = NOT_PLAIN;
    if (s.start == 0 || (s.end && s.end < s.start) || rules->latest_ns < 0 ||
        s.start > (uint64_t)rules->latest_ns || (rules->oldest_ns > 0 && s.start < (uint64_t)rules->oldest_ns))
        return NULL;
    double queue, ttft = 0, prefill, decode, e2e, temperature = 0;
    int has_ttft, has_e2e, has_temperature;
    if (number_of(&values[K_QUEUE], 0, MAX_REQUEST_SECONDS, &queue) != 1 ||
        number_of(&values[K_PREFILL], 0, MAX_REQUEST_SECONDS, &prefill) != 1 ||
        number_of(&values[K_DECODE], 0, MAX_REQUEST_SECONDS, &decode) != 1 ||
        (has_ttft = number_of(&values[K_TTFT], 0, MAX_REQUEST_SECONDS, &ttft)) == NOT_PLAIN ||
        (has_e2e = number_of(&values[K_E2E], 0, MAX_REQUEST_SECONDS, &e2e)) == NOT_PLAIN ||
        (has_temperature = number_of(&values[K_TEMPERATURE], -FLOAT32_MAX, FLOAT32_MAX, &temperature)) == NOT_PLAIN)
        return NULL;
    if (!has_e2e) { /* the span's own duration */
        if (s.end == 0)
            return NULL;
        e2e = (double)(s.end - s.start) / 1e9;
        if (!(0 <= e2e && e2e <= MAX_REQUEST_SECONDS))
            return NULL;
    }
    int request_key = text_key(st, values, K_REQUEST_ID, K_RESPONSE_ID);
    int model_key = text_key(st, values, K_RESPONSE_MODEL, K_REQUEST_MODEL);
    if (request_key == -2 || model_key == -2)
        return NULL;
    *status = OK;
    c[10] = count_of(values, PROMPT_KEYS, 2, UINT32_LIMIT, status);
    c[11] = c[10] ? count_of(values, CACHED_KEYS, 3, UINT32_LIMIT, status) : NULL;
    c[12] = c[11] ? count_of(values, OUTPUT_KEYS, 2, UINT32_LIMIT, status) : NULL;
    c[13] = c[12] ? count_of(values, N_KEYS_, 3, UINT16_LIMIT, status) : NULL;
    c[14] = c[13] ? count_of(values, MAX_TOKENS_KEYS, 1, UINT32_LIMIT, status) : NULL;
    c[21] = c[14] ? finish_of(st, values, status) : NULL;
    if (c[21] == NULL) {
        if (*status == OK)
            *status = ERROR;
        goto done;
    }
    long long start_us = (long long)(s.start / 1000);
    c[0] = PyLong_FromLongLong(start_us);
    c[1] = PyLong_FromLongLong(start_us + (long long)(e2e * 1e6));
    c[2] = hex(&s.trace);
    c[3] = hex(&s.span);
    Py_ssize_t id_limit = st->max_chars < 256 ? st->max_chars : 256;
    c[4] = request_key < 0 ? PyUnicode_New(0, 127) : cut_text(NULL, &values[request_key], id_limit);
    c[5] = Py_NewRef(rules->cluster);
    c[6] = Py_NewRef(rules->host);
    c[7] = Py_NewRef(rules->deployment);
    c[8] = model_key < 0 ? Py_NewRef(rules->model) : cut_text(&st->model, &values[model_key], st->max_chars);
    c[9] = Py_NewRef(rules->framework);
    c[15] = seconds(has_temperature, temperature);
    c[16] = PyFloat_FromDouble(queue);
    c[17] = seconds(has_ttft, ttft);
    c[18] = PyFloat_FromDouble(prefill);
    c[19] = PyFloat_FromDouble(decode);
    c[20] = PyFloat_FromDouble(e2e);
    if (s.code == 2 && s.message.end != s.message.p) {
        Value message = {'s', s.message, utf8_chars(&s.message), 0, 0};
        c[22] = cut_text(NULL, &message, 512);
    } else if (s.code == 2) {
        c[22] = PyUnicode_FromString("error");
    } else if (PyUnicode_CompareWithASCIIString(c[21], "error") == 0 ||
               PyUnicode_CompareWithASCIIString(c[21], "abort") == 0) {
        c[22] = Py_NewRef(c[21]);
    } else {
        c[22] = PyUnicode_New(0, 127);
    }
    c[23] = Py_NewRef(rules->gpu_uuids);
    for (int i = 0; i < N_COLUMNS; i++) {
        if (c[i] == NULL) {
            *status = ERROR;
            goto done;
        }
    }
    if ((row = PyTuple_New(N_COLUMNS)) == NULL) {
        *status = ERROR;
        goto done;
    }
    for (int i = 0; i < N_COLUMNS; i++) {
        PyTuple_SET_ITEM(row, i, c[i]);
        c[i] = NULL;
    }
    st->truncated += truncated;
done:
    for (int i = 0; i < N_COLUMNS; i++)
        Py_XDECREF(c[i]);
    return row;
}

static int decode_resource_spans(State *st, Reader r, PyObject *span_type, Rules *rules, Plan *plan,
                                 PyObject *out) {
    uint32_t field;
    int wire_type, status = OK;
    int seen_resource = 0;
    Reader scan = r;
    PyObject *resource = PyDict_New();
    PyObject *spans = PyList_New(0);
    if (resource == NULL || spans == NULL) {
        status = ERROR;
        goto done;
    }
    /* The resource first, wherever it is: the rows of plain spans carry its values. */
    while (scan.p < scan.end) {
        if ((status = read_tag(&scan, &field, &wire_type)) != OK)
            goto done;
        if (field != 1) {
            /* Scope spans (2) are read below; the rest is only checked. */
            status = field == 2 ? skip(&scan, wire_type) : check_field(&scan, 'R', field, wire_type, 0);
            if (status != OK)
                goto done;
            continue;
        }
        Reader sub;
        if (wire_type != WT_LEN || seen_resource++) {
            status = FALLBACK;
            goto done;
        }
        if ((status = read_len(&scan, &sub)) != OK)
            goto done;
        if ((status = decode_attributes(st, resource, &sub, 'S', 0, 0)) != OK)
            goto done;
    }
    if (rules != NULL && (status = use_resource(rules, resource)) != OK)
        goto done;
    while (r.p < r.end) {
        Reader sub;
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            goto done;
        if (field != 2) {
            if ((status = skip(&r, wire_type)) != OK)
                goto done;
            continue;
        }
        if ((status = read_len(&r, &sub)) != OK)
            goto done;
        /* ScopeSpans: its spans (field 2); the scope and schema URL are only checked. */
        while (sub.p < sub.end) {
            if ((status = read_tag(&sub, &field, &wire_type)) != OK)
                goto done;
            if (field != 2) {
                if ((status = check_field(&sub, 'P', field, wire_type, 0)) != OK)
                    goto done;
                continue;
            }
            Reader span_bytes;
            if (wire_type != WT_LEN) {
                status = FALLBACK;
                goto done;
            }
            if ((status = read_len(&sub, &span_bytes)) != OK)
                goto done;
            PyObject *span = NULL;
            if (rules != NULL && plan->next < plan->count && plan->plain[plan->next++]) {
                span = vllm_row(st, span_bytes, rules, &status);
                if (span == NULL && status != NOT_PLAIN)
                    goto done;
            }
            if (span == NULL && (span = decode_span(st, span_bytes, span_type, &status)) == NULL)
                goto done;
            int failed = PyList_Append(spans, span);
            Py_DECREF(span);
            if (failed) {
                status = ERROR;
                goto done;
            }
        }
    }
    {
        PyObject *pair = PyTuple_Pack(2, resource, spans);
        if (pair == NULL || PyList_Append(out, pair) != 0)
            status = ERROR;
        Py_XDECREF(pair);
    }
done:
    Py_XDECREF(resource);
    Py_XDECREF(spans);
    return status;
}

static PyObject *decode_traces(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer data;
    Py_ssize_t max_chars;
    PyObject *span_type, *rules_tuple = Py_None;
    if (!PyArg_ParseTuple(args, "y*nO|O:decode_traces", &data, &max_chars, &span_type, &rules_tuple))
        return NULL;
    State *st = PyMem_Calloc(1, sizeof(State));
    PyObject *out = PyList_New(0);
    PyObject *result = NULL;
    Rules rules = {0};
    Plan plan = {0};
    int status = OK;
    if (st == NULL || out == NULL) {
        if (st == NULL)
            PyErr_NoMemory();
        goto done;
    }
    st->max_chars = max_chars < 0 ? 0 : max_chars;
    for (int i = 0; i < CACHE_SLOTS; i++)
        st->hints[i].len = -1;
    Reader r = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len};
    if (rules_tuple != Py_None) {
        if ((status = read_rules(rules_tuple, &rules)) != OK)
            goto done;
        /* The whole request's ids first: which spans can become rows on their own. */
        if ((status = make_plan(r, &rules, &plan)) != OK)
            goto done;
    }
    uint32_t field;
    Reader sub;
    while (status == OK && (status = next_len_in(&r, 1u << 1, &field, &sub)) == OK)
        status = decode_resource_spans(st, sub, span_type, rules_tuple == Py_None ? NULL : &rules, &plan, out);
    if (status == DONE)
        status = OK;
done:
    if (status == OK && out != NULL) {
        result = Py_BuildValue("(OL)", out, st->truncated);
    } else if (!PyErr_Occurred()) {
        /* Unusual or malformed bytes, or too many spans: upb and the Python path decide. */
        result = Py_NewRef(Py_None);
    }
    if (st != NULL) {
        for (int i = 0; i < CACHE_SLOTS; i++) {
            Py_XDECREF(st->keys[i].str);
            Py_XDECREF(st->values[i].str);
        }
        Py_XDECREF(st->model.str);
        Py_XDECREF(st->finish.str);
        PyMem_Free(st);
    }
    release_rules(&rules);
    PyMem_Free(plan.plain);
    Py_XDECREF(out);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_traces", decode_traces, METH_VARARGS,
     "decode_traces(data, max_attribute_bytes, span_type, rules=None) -> ([(resource_attrs, [Span | row])], "
     "truncated) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlp", "OTLP trace requests read from the protobuf wire format.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp(void) { return PyModule_Create(&module); }
