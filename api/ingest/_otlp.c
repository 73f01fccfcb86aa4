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
 * It is only ever given bytes that upb has already parsed (so they are well formed and
 * their strings valid UTF-8), and it reads only the encoding a protobuf serializer writes.
 * Anything else that is legal protobuf but unusual - a singular field twice (which protobuf
 * merges), two members of AnyValue's oneof, a known field with another wire type, groups,
 * nesting deeper than MAX_DEPTH - makes it answer None, and the caller takes the Python
 * path, so the result never differs from it. tests/ingest/test_wire_decoder.py holds the
 * two paths to the same output.
 *
 * decode_traces(data: bytes, max_attribute_bytes: int, span_type: type)
 *     -> (list[tuple[dict, list[Span]]], truncated: int) | None
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define CACHE_SLOTS 64
#define CACHE_MAX_LEN 96

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Why decoding stopped: FALLBACK means "valid, but take the Python path". */
enum { OK = 0, FALLBACK = 1, ERROR = 2 };

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

/* Strings repeat from span to span at the same attribute position (the same keys in the
 * same order, often the same model name or finish reason), so each position remembers
 * its last key and last short string value and hands out the same str object when the
 * bytes match. Reused keys also keep their cached hash for the dict. */
typedef struct {
    Py_ssize_t len;
    char bytes[CACHE_MAX_LEN];
    PyObject *str;
} Slot;

typedef struct {
    Py_ssize_t max_chars;
    long long truncated;
    Slot keys[CACHE_SLOTS];
    Slot values[CACHE_SLOTS];
} State;

static int read_varint(Reader *r, uint64_t *out) {
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

static int read_tag(Reader *r, uint32_t *field, int *wire_type) {
    uint64_t tag;
    if (read_varint(r, &tag) != OK)
        return ERROR;
    *field = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    if (*field == 0)
        return ERROR;
    return OK;
}

static int read_len(Reader *r, Reader *sub) {
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
static int advance(Reader *r, Py_ssize_t n) {
    if (r->end - r->p < n)
        return ERROR;
    r->p += n;
    return OK;
}

static int read_fixed64(Reader *r, uint64_t *out) {
    if (r->end - r->p < 8)
        return ERROR;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | r->p[i];
    r->p += 8;
    *out = v;
    return OK;
}

static int skip(Reader *r, int wire_type) {
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

/* A new reference to the str for these UTF-8 bytes; NULL with an exception set, or NULL
 * with *status = FALLBACK when the bytes are not valid UTF-8 (upb would have refused them). */
static PyObject *text(const Reader *r, int *status) {
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->p, r->end - r->p, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        *status = FALLBACK;
    }
    return s;
}

static PyObject *cached_text(Slot *slot, const Reader *r, int *status) {
    Py_ssize_t len = r->end - r->p;
    if (slot != NULL && slot->str != NULL && slot->len == len && memcmp(slot->bytes, r->p, len) == 0) {
        Py_INCREF(slot->str);
        return slot->str;
    }
    PyObject *s = text(r, status);
    if (s != NULL && slot != NULL && len <= CACHE_MAX_LEN) {
        Py_XDECREF(slot->str);
        memcpy(slot->bytes, r->p, len);
        slot->len = len;
        Py_INCREF(s);
        slot->str = s;
    }
    return s;
}

/* A string attribute value, cut to max_chars characters (counted), as the Python path does.
 * Only values that were not cut are remembered, so a reused value needs no count. */
static PyObject *string_value(State *st, Slot *slot, const Reader *r, int *status) {
    Py_ssize_t len = r->end - r->p;
    if (slot != NULL && slot->str != NULL && slot->len == len && memcmp(slot->bytes, r->p, len) == 0) {
        Py_INCREF(slot->str);
        return slot->str;
    }
    PyObject *s = text(r, status);
    if (s == NULL)
        return NULL;
    if (PyUnicode_GET_LENGTH(s) > st->max_chars) {
        PyObject *cut = PyUnicode_Substring(s, 0, st->max_chars);
        Py_DECREF(s);
        st->truncated++;
        return cut;
    }
    if (slot != NULL && len <= CACHE_MAX_LEN) {
        Py_XDECREF(slot->str);
        memcpy(slot->bytes, r->p, len);
        slot->len = len;
        Py_INCREF(s);
        slot->str = s;
    }
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

/* Marks an AnyValue with no member set: the key is left out, an array item is None. */
static PyObject UNSET_MARK;
#define UNSET (&UNSET_MARK)

static int decode_attributes(State *st, PyObject *dict, Reader *r, uint32_t list_field, int depth, int cached);

static PyObject *decode_any(State *st, Reader r, int depth, Slot *slot, int *status) {
    if (depth > MAX_DEPTH) {
        *status = FALLBACK;
        return NULL;
    }
    int members = 0;
    uint32_t field = 0;
    int wire_type = 0;
    Reader chosen = {NULL, NULL};
    uint32_t chosen_field = 0;
    uint64_t scalar = 0;
    while (r.p < r.end) {
        if ((*status = read_tag(&r, &field, &wire_type)) != OK)
            return NULL;
        int expected = field == 4 ? WT_I64 : (field == 1 || field == 5 || field == 6 || field == 7) ? WT_LEN : WT_VARINT;
        if (field < 1 || field > 8) {
            if ((*status = skip(&r, wire_type)) != OK)
                return NULL;
            continue;
        }
        if (wire_type != expected) {
            *status = FALLBACK;
            return NULL;
        }
        if (++members > 1) {
            *status = FALLBACK; /* oneof set twice: protobuf keeps the last, merging messages */
            return NULL;
        }
        chosen_field = field;
        if (expected == WT_LEN) {
            if ((*status = read_len(&r, &chosen)) != OK)
                return NULL;
        } else if (expected == WT_I64) {
            if ((*status = read_fixed64(&r, &scalar)) != OK)
                return NULL;
        } else if ((*status = read_varint(&r, &scalar)) != OK) {
            return NULL;
        }
    }
    switch (chosen_field) {
    case 0:
        return UNSET;
    case 1:
        return string_value(st, slot, &chosen, status);
    case 2:
        return PyBool_FromLong(scalar != 0);
    case 3:
        return PyLong_FromLongLong((long long)(int64_t)scalar);
    case 4: {
        double d;
        memcpy(&d, &scalar, sizeof d);
        return PyFloat_FromDouble(d);
    }
    case 5: {
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
        if ((*status = decode_attributes(st, dict, &chosen, 1, depth + 1, 0)) != OK) {
            Py_DECREF(dict);
            return NULL;
        }
        return dict;
    }
    case 7:
        return hex(&chosen);
    default: /* 8: string_value_strindex, an int32 */
        return PyLong_FromLong((long)(int32_t)scalar);
    }
}

/* One KeyValue into `dict` (a value with no member set leaves the key out). */
static int decode_key_value(State *st, PyObject *dict, Reader r, int depth, Py_ssize_t position, int cached) {
    uint32_t field;
    int wire_type, status;
    Reader key = {NULL, NULL}, value = {NULL, NULL};
    int have_key = 0, have_value = 0;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        if (field == 1 || field == 2) {
            if (wire_type != WT_LEN || (field == 1 ? have_key : have_value))
                return FALLBACK;
            if ((status = read_len(&r, field == 1 ? &key : &value)) != OK)
                return status;
            if (field == 1)
                have_key = 1;
            else
                have_value = 1;
        } else if ((status = skip(&r, wire_type)) != OK) {
            return status;
        }
    }
    if (!have_value)
        return OK;
    int use_cache = cached && position < CACHE_SLOTS;
    status = OK;
    PyObject *v = decode_any(st, value, depth, use_cache ? &st->values[position] : NULL, &status);
    if (v == NULL)
        return status == OK ? ERROR : status;
    if (v == UNSET)
        return OK;
    PyObject *k;
    if (have_key) {
        k = cached_text(use_cache ? &st->keys[position] : NULL, &key, &status);
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

/* Every KeyValue under `list_field` of the message in `r`, into `dict`. */
static int decode_attributes(State *st, PyObject *dict, Reader *r, uint32_t list_field, int depth, int cached) {
    uint32_t field;
    int wire_type, status;
    Py_ssize_t position = 0;
    while (r->p < r->end) {
        if ((status = read_tag(r, &field, &wire_type)) != OK)
            return status;
        if (field != list_field) {
            if ((status = skip(r, wire_type)) != OK)
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

/* Span fields, in Span's constructor order. */
enum { F_TRACE, F_SPAN, F_PARENT, F_NAME, F_KIND, F_START, F_END, F_ATTRS, F_CODE, F_MESSAGE, N_FIELDS };

static int decode_status(Reader r, PyObject **code, PyObject **message) {
    uint32_t field;
    int wire_type, status;
    int seen_code = 0, seen_message = 0;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            return status;
        if (field == 2) {
            Reader m;
            if (wire_type != WT_LEN || seen_message++)
                return FALLBACK;
            if ((status = read_len(&r, &m)) != OK)
                return status;
            status = OK;
            PyObject *s = text(&m, &status);
            if (s == NULL)
                return status == OK ? ERROR : status;
            Py_SETREF(*message, s);
        } else if (field == 3) {
            uint64_t v;
            if (wire_type != WT_VARINT || seen_code++)
                return FALLBACK;
            if ((status = read_varint(&r, &v)) != OK)
                return status;
            PyObject *c = PyLong_FromLong((long)(int32_t)v);
            if (c == NULL)
                return ERROR;
            Py_SETREF(*code, c);
        } else if ((status = skip(&r, wire_type)) != OK) {
            return status;
        }
    }
    return OK;
}

static PyObject *decode_span(State *st, Reader r, PyObject *span_type, PyObject *empty_bytes, PyObject *empty_str,
                             int *status) {
    PyObject *f[N_FIELDS] = {NULL};
    PyObject *span = NULL;
    uint32_t seen = 0;
    uint32_t field;
    int wire_type;
    f[F_TRACE] = Py_NewRef(empty_bytes);
    f[F_SPAN] = Py_NewRef(empty_bytes);
    f[F_PARENT] = Py_NewRef(empty_bytes);
    f[F_NAME] = Py_NewRef(empty_str);
    f[F_MESSAGE] = Py_NewRef(empty_str);
    if ((f[F_KIND] = PyLong_FromLong(0)) == NULL || (f[F_START] = PyLong_FromLong(0)) == NULL ||
        (f[F_END] = PyLong_FromLong(0)) == NULL || (f[F_CODE] = PyLong_FromLong(0)) == NULL ||
        (f[F_ATTRS] = PyDict_New()) == NULL) {
        *status = ERROR;
        goto done;
    }
    while (r.p < r.end) {
        if ((*status = read_tag(&r, &field, &wire_type)) != OK)
            goto done;
        int slot = -1, expected = WT_LEN;
        switch (field) {
        case 1: slot = F_TRACE; break;
        case 2: slot = F_SPAN; break;
        case 4: slot = F_PARENT; break;
        case 5: slot = F_NAME; break;
        case 6: slot = F_KIND; expected = WT_VARINT; break;
        case 7: slot = F_START; expected = WT_I64; break;
        case 8: slot = F_END; expected = WT_I64; break;
        case 9: slot = F_ATTRS; break;
        case 15: slot = F_CODE; break; /* status */
        default:
            if ((*status = skip(&r, wire_type)) != OK)
                goto done;
            continue;
        }
        if (wire_type != expected) {
            *status = FALLBACK;
            goto done;
        }
        if (slot != F_ATTRS) {
            if (seen & (1u << slot)) {
                *status = FALLBACK; /* a singular field twice */
                goto done;
            }
            seen |= 1u << slot;
        }
        if (expected == WT_VARINT) {
            uint64_t v;
            if ((*status = read_varint(&r, &v)) != OK)
                goto done;
            PyObject *kind = PyLong_FromLong((long)(int32_t)v);
            if (kind == NULL) {
                *status = ERROR;
                goto done;
            }
            Py_SETREF(f[F_KIND], kind);
            continue;
        }
        if (expected == WT_I64) {
            uint64_t v;
            if ((*status = read_fixed64(&r, &v)) != OK)
                goto done;
            PyObject *t = PyLong_FromUnsignedLongLong(v);
            if (t == NULL) {
                *status = ERROR;
                goto done;
            }
            Py_SETREF(f[slot], t);
            continue;
        }
        Reader sub;
        if ((*status = read_len(&r, &sub)) != OK)
            goto done;
        if (slot == F_ATTRS) {
            /* One KeyValue: positions count across the span's attribute fields. */
            Py_ssize_t position = PyDict_GET_SIZE(f[F_ATTRS]);
            if ((*status = decode_key_value(st, f[F_ATTRS], sub, 0, position, 1)) != OK)
                goto done;
        } else if (slot == F_CODE) {
            if ((*status = decode_status(sub, &f[F_CODE], &f[F_MESSAGE])) != OK)
                goto done;
        } else if (slot == F_NAME) {
            PyObject *s = text(&sub, status);
            if (s == NULL) {
                if (*status == OK)
                    *status = ERROR;
                goto done;
            }
            Py_SETREF(f[F_NAME], s);
        } else {
            PyObject *b = PyBytes_FromStringAndSize((const char *)sub.p, sub.end - sub.p);
            if (b == NULL) {
                *status = ERROR;
                goto done;
            }
            Py_SETREF(f[slot], b);
        }
    }
    span = PyObject_Vectorcall(span_type, f, N_FIELDS, NULL);
    *status = span == NULL ? ERROR : OK;
done:
    for (int i = 0; i < N_FIELDS; i++)
        Py_XDECREF(f[i]);
    return span;
}

static int decode_resource_spans(State *st, Reader r, PyObject *span_type, PyObject *empty_bytes,
                                 PyObject *empty_str, PyObject *out) {
    uint32_t field;
    int wire_type, status = OK;
    int seen_resource = 0;
    PyObject *resource = PyDict_New();
    PyObject *spans = PyList_New(0);
    if (resource == NULL || spans == NULL) {
        status = ERROR;
        goto done;
    }
    while (r.p < r.end) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            goto done;
        if (field != 1 && field != 2) {
            if ((status = skip(&r, wire_type)) != OK)
                goto done;
            continue;
        }
        Reader sub;
        if (wire_type != WT_LEN || (field == 1 && seen_resource++)) {
            status = FALLBACK;
            goto done;
        }
        if ((status = read_len(&r, &sub)) != OK)
            goto done;
        if (field == 1) {
            if ((status = decode_attributes(st, resource, &sub, 1, 0, 0)) != OK)
                goto done;
            continue;
        }
        /* ScopeSpans: its spans (field 2); the scope and schema URL are not read. */
        while (sub.p < sub.end) {
            if ((status = read_tag(&sub, &field, &wire_type)) != OK)
                goto done;
            if (field != 2) {
                if ((status = skip(&sub, wire_type)) != OK)
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
            PyObject *span = decode_span(st, span_bytes, span_type, empty_bytes, empty_str, &status);
            if (span == NULL)
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
    PyObject *span_type;
    if (!PyArg_ParseTuple(args, "y*nO:decode_traces", &data, &max_chars, &span_type))
        return NULL;
    State *st = PyMem_Calloc(1, sizeof(State));
    PyObject *out = PyList_New(0);
    PyObject *empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    PyObject *empty_str = PyUnicode_New(0, 127);
    PyObject *result = NULL;
    int status = OK;
    if (st == NULL || out == NULL || empty_bytes == NULL || empty_str == NULL) {
        if (st == NULL)
            PyErr_NoMemory();
        goto done;
    }
    st->max_chars = max_chars < 0 ? 0 : max_chars;
    Reader r = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len};
    uint32_t field;
    int wire_type;
    while (r.p < r.end && status == OK) {
        if ((status = read_tag(&r, &field, &wire_type)) != OK)
            break;
        if (field != 1) {
            status = skip(&r, wire_type);
            continue;
        }
        Reader sub;
        if (wire_type != WT_LEN) {
            status = FALLBACK;
            break;
        }
        if ((status = read_len(&r, &sub)) != OK)
            break;
        status = decode_resource_spans(st, sub, span_type, empty_bytes, empty_str, out);
    }
    if (status == OK) {
        result = Py_BuildValue("(OL)", out, st->truncated);
    } else if (!PyErr_Occurred()) {
        /* Unusual or malformed bytes: the Python path decides (and reports) instead. */
        result = Py_NewRef(Py_None);
    }
done:
    if (st != NULL) {
        for (int i = 0; i < CACHE_SLOTS; i++) {
            Py_XDECREF(st->keys[i].str);
            Py_XDECREF(st->values[i].str);
        }
        PyMem_Free(st);
    }
    Py_XDECREF(out);
    Py_XDECREF(empty_bytes);
    Py_XDECREF(empty_str);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_traces", decode_traces, METH_VARARGS,
     "decode_traces(data, max_attribute_bytes, span_type) -> ([(resource_attrs, [Span])], truncated) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlp", "OTLP trace requests read from the protobuf wire format.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp(void) { return PyModule_Create(&module); }
