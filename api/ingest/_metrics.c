/*
 * OTLP metrics requests, GPU fields read straight from the protobuf wire format.
 *
 * A collector's minute of an 8-GPU host is ~6,400 NumberDataPoints. Walking them as upb
 * objects and joining them into rows with numpy costs ~20 µs a row; this module does the
 * walk and the join in two passes over the bytes and leaves Python only what is per GPU,
 * not per point (api/ingest/gpu_wire.py drives it):
 *
 * scan_metrics(data, names) reads the envelope and every point of the GPU metrics (a
 * name in `names`, a gauge or a sum) into columns: time, value, which value, field, and
 * the point's attribute set, numbered by its bytes within its resource, so the GPUs of a
 * host are decoded once each however many points they have. The resources, the distinct
 * attribute sets and every other metric come back as bytes for upb and the Python rules.
 *
 * join_points(scan columns, per-set facts, bounds, ...) checks each point as the
 * per-point loop of api/ingest/metrics.py does (GPU id, time, value, pid, range, in that
 * order), then joins the accepted ones into one row per GPU and instant in the order their
 * first point came, the last point of a field winning: Arrow-ready column buffers.
 *
 * Like _otlp.c it answers None (the caller then lets upb parse the request) for anything
 * it does not read the way upb would: malformed bytes, a singular message field twice
 * (protobuf merges them), a known field with another wire type, a point whose attributes
 * are not one run of fields. Strings it reads are checked as UTF-8; the parts it hands on
 * are checked by upb when Python parses them. tests/ingest/test_gpu_wire.py holds the two
 * paths to the same rows, rejections and counts.
 */

#include "_wire.h"

#include <math.h>

/* One GPU point as scanned. */
enum { V_NONE = 0, V_DOUBLE = 1, V_INT = 2 };

/* Why join_points turned a point away (0: accepted), in the per-point loop's order. */
enum { REASON_NONE = 0, REASON_NO_UUID = 1, REASON_TIME = 2, REASON_VALUE = 3, REASON_PID = 4, REASON_RANGE = 5 };

#define N_COLUMNS 13
#define N_FIELDS 64

/* A growable array of fixed-size items. */
typedef struct {
    char *data;
    Py_ssize_t len, cap, size;
} Vec;

static int vec_grow(Vec *v, Py_ssize_t need) {
    if (need <= v->cap)
        return OK;
    Py_ssize_t cap = v->cap ? v->cap : 256;
    while (cap < need)
        cap *= 2;
    char *data = PyMem_Realloc(v->data, cap * v->size);
    if (data == NULL) {
        PyErr_NoMemory();
        return ERROR;
    }
    v->data = data;
    v->cap = cap;
    return OK;
}

#define VEC_PUSH(v, type, value)                                                                        \
    (vec_grow(&(v), (v).len + 1) != OK ? ERROR : (((type *)(v).data)[(v).len++] = (value), OK))

static PyObject *vec_bytes(const Vec *v) {
    return PyBytes_FromStringAndSize(v->data, v->len * v->size);
}

/* An attribute set: its bytes (a run of NumberDataPoint.attributes fields) in a resource. */
typedef struct {
    const uint8_t *p;
    Py_ssize_t len;
    int32_t resource;
    uint64_t hash;
    Py_ssize_t seen; /* the last point that had it */
} Group;

typedef struct {
    PyObject *names; /* dict: metric name -> field code */
    PyObject *resources; /* list: each ResourceMetrics' Resource bytes */
    PyObject *items;     /* list: (resource, name, start, end) or (resource, metric bytes) */
    int32_t resource;    /* the ResourceMetrics being read */
    Py_ssize_t points;   /* every data point of every metric, for the request's limit */
    Vec time, value, kind, field, group;
    Vec groups;            /* Group */
    int32_t *table;        /* open addressing over groups: index + 1, 0 empty */
    Py_ssize_t table_size; /* a power of two */
    /* Points come in a rhythm: a collector writes every GPU of a host in turn, tick after
     * tick, so a point usually has the set the point `period` places back had, `period`
     * being how far back the last point's set was seen before. That one comparison spares
     * the hash of ~100 bytes for nearly every point. */
    Py_ssize_t period;
} Scan;

/* Four independent lanes, so the multiplies overlap; every byte counts. */
static uint64_t hash_bytes(const uint8_t *p, Py_ssize_t n, int32_t resource) {
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    uint64_t a = 0xcbf29ce484222325ULL ^ (uint64_t)n, b = (uint64_t)(uint32_t)resource, c = k, d = ~k;
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = (a ^ w[0]) * k;
        b = (b ^ w[1]) * k;
        c = (c ^ w[2]) * k;
        d = (d ^ w[3]) * k;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        a = (a ^ w) * k;
        a ^= a >> 29;
    }
    for (; i < n; i++)
        b = (b ^ p[i]) * k;
    uint64_t h = a ^ (b >> 7) ^ (c << 11 | c >> 53) ^ (d << 23 | d >> 41);
    h *= k;
    return h ^ (h >> 32);
}

static int same_group(const Group *g, const uint8_t *p, Py_ssize_t n, int32_t resource) {
    return g->len == n && g->resource == resource && memcmp(g->p, p, n) == 0;
}

static int rehash(Scan *s, Py_ssize_t size) {
    int32_t *table = PyMem_Calloc(size, sizeof(int32_t));
    if (table == NULL) {
        PyErr_NoMemory();
        return ERROR;
    }
    const Group *groups = (const Group *)s->groups.data;
    for (Py_ssize_t i = 0; i < s->groups.len; i++) {
        Py_ssize_t at = groups[i].hash & (size - 1);
        while (table[at])
            at = (at + 1) & (size - 1);
        table[at] = (int32_t)(i + 1);
    }
    PyMem_Free(s->table);
    s->table = table;
    s->table_size = size;
    return OK;
}

/* The number of this attribute set in this resource, a new one if it is new. */
static int intern(Scan *s, const uint8_t *p, Py_ssize_t n, int32_t *out) {
    Group *groups = (Group *)s->groups.data;
    Py_ssize_t here = s->group.len; /* this point's place among all points */
    if (s->period > 0 && s->period <= here) {
        int32_t guess = ((const int32_t *)s->group.data)[here - s->period];
        if (same_group(&groups[guess], p, n, s->resource)) {
            groups[guess].seen = here;
            *out = guess;
            return OK;
        }
    }
    uint64_t hash = hash_bytes(p, n, s->resource);
    Py_ssize_t mask = s->table_size - 1;
    for (Py_ssize_t at = hash & mask; s->table[at]; at = (at + 1) & mask) {
        int32_t i = s->table[at] - 1;
        if (groups[i].hash == hash && same_group(&groups[i], p, n, s->resource)) {
            s->period = here - groups[i].seen;
            groups[i].seen = here;
            *out = i;
            return OK;
        }
    }
    Group g = {p, n, s->resource, hash, here};
    if (VEC_PUSH(s->groups, Group, g) != OK)
        return ERROR;
    int32_t i = (int32_t)(s->groups.len - 1);
    if (2 * s->groups.len > s->table_size) {
        if (rehash(s, s->table_size * 2) != OK)
            return ERROR;
    } else {
        Py_ssize_t at = hash & mask;
        while (s->table[at])
            at = (at + 1) & mask;
        s->table[at] = i + 1;
    }
    *out = i;
    return OK;
}

/* One NumberDataPoint: the last time and value given win, as protobuf has it; the
 * attributes must be one run of fields (their bytes are the set's identity). */
static int scan_point(Scan *s, Reader r, uint8_t field_code) {
    uint64_t time = 0, raw = 0;
    uint8_t kind = V_NONE;
    const uint8_t *attrs = NULL, *attrs_end = NULL;
    int run = 0; /* 0 no attributes yet, 1 in their run, 2 after it */
    uint32_t number;
    int wire_type, status;
    while (r.p < r.end) {
        const uint8_t *at = r.p;
        if ((status = read_tag(&r, &number, &wire_type)) != OK)
            return status;
        if (number == 7 && wire_type == WT_LEN) {
            if (run == 2)
                return FALLBACK;
            Reader kv;
            if ((status = read_len(&r, &kv)) != OK)
                return status;
            if (run == 0)
                attrs = at;
            attrs_end = r.p;
            run = 1;
            continue;
        }
        if (run == 1)
            run = 2;
        if ((number == 3 || number == 4 || number == 6) && wire_type == WT_I64) {
            uint64_t v;
            if ((status = read_fixed64(&r, &v)) != OK)
                return status;
            if (number == 3) {
                time = v;
            } else {
                raw = v;
                kind = number == 4 ? V_DOUBLE : V_INT;
            }
            continue;
        }
        if ((status = check_field(&r, 'D', number, wire_type, 0)) != OK)
            return status;
    }
    double value = 0.0;
    if (kind == V_DOUBLE)
        memcpy(&value, &raw, 8);
    else if (kind == V_INT)
        value = (double)(int64_t)raw;
    int32_t group;
    if ((status = intern(s, attrs, attrs ? attrs_end - attrs : 0, &group)) != OK)
        return status;
    if (VEC_PUSH(s->time, uint64_t, time) != OK || VEC_PUSH(s->value, double, value) != OK ||
        VEC_PUSH(s->kind, uint8_t, kind) != OK || VEC_PUSH(s->field, uint8_t, field_code) != OK ||
        VEC_PUSH(s->group, int32_t, group) != OK)
        return ERROR;
    return OK;
}

/* A Gauge (`sum` 0) or Sum's points. */
static int scan_data(Scan *s, Reader r, int sum, uint8_t field_code) {
    uint32_t number;
    int wire_type, status;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &number, &wire_type)) != OK)
            return status;
        if (number == 1) {
            Reader point;
            if (wire_type != WT_LEN)
                return FALLBACK;
            if ((status = read_len(&r, &point)) != OK || (status = scan_point(s, point, field_code)) != OK)
                return status;
            s->points++;
        } else if (sum && (number == 2 || number == 3)) {
            if (wire_type != WT_VARINT)
                return FALLBACK;
            if ((status = skip(&r, wire_type)) != OK)
                return status;
        } else if ((status = skip(&r, wire_type)) != OK) {
            return status;
        }
    }
    return OK;
}

/* The data points of any metric's data (field 1 of Gauge, Sum, Histogram, ...), counted. */
static int count_points(Reader r, Py_ssize_t *count) {
    uint32_t number;
    int wire_type, status;
    while (r.p < r.end) {
        if ((status = read_tag(&r, &number, &wire_type)) != OK)
            return status;
        if (number == 1 && wire_type == WT_LEN)
            (*count)++;
        if ((status = skip(&r, wire_type)) != OK)
            return status;
    }
    return OK;
}

static int add_item(Scan *s, PyObject *item) {
    if (item == NULL)
        return ERROR;
    int failed = PyList_Append(s->items, item);
    Py_DECREF(item);
    return failed ? ERROR : OK;
}

/* Metric fields: name, description, unit (1-3), the data oneof (5 gauge, 7 sum,
 * 9 histogram, 10 exponential histogram, 11 summary) and metadata (12): all length-delimited. */
#define METRIC_FIELDS (0xe | 1u << 5 | 1u << 7 | 1u << 9 | 1u << 10 | 1u << 11 | 1u << 12)

static int scan_metric(Scan *s, Reader r) {
    const Reader whole = r;
    Reader name = {NULL, NULL}, data = {NULL, NULL}, sub;
    uint32_t data_field = 0, number;
    int status;
    while ((status = next_len_in(&r, METRIC_FIELDS, &number, &sub)) == OK) {
        if (number <= 3) {
            if (utf8_chars(&sub) < 0)
                return FALLBACK;
            if (number == 1)
                name = sub;
        } else if (number == 12) {
            if ((status = check_message(sub, 'K', 0)) != OK)
                return status;
        } else {
            if (data_field)
                return FALLBACK; /* the data oneof twice: upb merges or replaces */
            data = sub;
            data_field = number;
        }
    }
    if (status != DONE)
        return status;
    PyObject *code = NULL;
    if ((data_field == 5 || data_field == 7) && name.p != NULL) {
        PyObject *key = PyUnicode_DecodeUTF8((const char *)name.p, name.end - name.p, NULL);
        if (key == NULL)
            return ERROR;
        code = PyDict_GetItemWithError(s->names, key); /* borrowed */
        if (code == NULL && PyErr_Occurred()) {
            Py_DECREF(key);
            return ERROR;
        }
        if (code != NULL) {
            long field_code = PyLong_AsLong(code);
            if (field_code < 0 || field_code >= N_FIELDS) {
                Py_DECREF(key);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "field codes are 0..63");
                return ERROR;
            }
            Py_ssize_t start = s->time.len;
            status = scan_data(s, data, data_field == 7, (uint8_t)field_code);
            if (status != OK) {
                Py_DECREF(key);
                return status;
            }
            PyObject *item = Py_BuildValue("(iNnn)", s->resource, key, start, s->time.len);
            return add_item(s, item);
        }
        Py_DECREF(key);
    }
    if (data_field && (status = count_points(data, &s->points)) != OK)
        return status;
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)whole.p, whole.end - whole.p);
    return add_item(s, bytes == NULL ? NULL : Py_BuildValue("(iN)", s->resource, bytes));
}

/* ScopeMetrics: scope (1), metrics (2) and schema_url (3), all length-delimited. */
static int scan_scope_metrics(Scan *s, Reader r) {
    Reader sub;
    uint32_t number;
    int status;
    while ((status = next_len_in(&r, 0xe, &number, &sub)) == OK) {
        if (number == 1)
            status = check_message(sub, 'I', 0); /* the scope: unused, but upb checks it */
        else if (number == 2)
            status = scan_metric(s, sub);
        else
            status = utf8_chars(&sub) < 0 ? FALLBACK : OK;
        if (status != OK)
            return status;
    }
    return status == DONE ? OK : status;
}

/* ResourceMetrics: resource (1), scope_metrics (2) and schema_url (3), all length-delimited. */
static int scan_resource_metrics(Scan *s, Reader r) {
    s->resource = (int32_t)PyList_GET_SIZE(s->resources);
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL || PyList_Append(s->resources, empty) != 0) {
        Py_XDECREF(empty);
        return ERROR;
    }
    Py_DECREF(empty);
    int has_resource = 0;
    Reader sub;
    uint32_t number;
    int status;
    while ((status = next_len_in(&r, 0xe, &number, &sub)) == OK) {
        if (number == 1) {
            if (has_resource++)
                return FALLBACK; /* upb would merge the two */
            PyObject *bytes = PyBytes_FromStringAndSize((const char *)sub.p, sub.end - sub.p);
            if (bytes == NULL || PyList_SetItem(s->resources, s->resource, bytes) != 0) /* for b"" */
                return ERROR;
        } else if (number == 2) {
            if ((status = scan_scope_metrics(s, sub)) != OK)
                return status;
        } else if (utf8_chars(&sub) < 0) {
            return FALLBACK;
        }
    }
    return status == DONE ? OK : status;
}

static void release_scan(Scan *s) {
    Py_XDECREF(s->resources);
    Py_XDECREF(s->items);
    PyMem_Free(s->time.data);
    PyMem_Free(s->value.data);
    PyMem_Free(s->kind.data);
    PyMem_Free(s->field.data);
    PyMem_Free(s->group.data);
    PyMem_Free(s->groups.data);
    PyMem_Free(s->table);
}

static PyObject *scan_result(Scan *s) {
    const Group *groups = (const Group *)s->groups.data;
    PyObject *sets = PyList_New(s->groups.len);
    Vec owners = {NULL, 0, 0, sizeof(int32_t)};
    if (sets == NULL || vec_grow(&owners, s->groups.len) != OK) {
        Py_XDECREF(sets);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < s->groups.len; i++) {
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)groups[i].p, groups[i].len);
        if (bytes == NULL) {
            Py_DECREF(sets);
            PyMem_Free(owners.data);
            return NULL;
        }
        PyList_SET_ITEM(sets, i, bytes);
        ((int32_t *)owners.data)[owners.len++] = groups[i].resource;
    }
    PyObject *result = Py_BuildValue("(OONNNNNNNn)", s->resources, s->items, sets, vec_bytes(&owners),
                                     vec_bytes(&s->time), vec_bytes(&s->value), vec_bytes(&s->kind),
                                     vec_bytes(&s->field), vec_bytes(&s->group), s->points);
    PyMem_Free(owners.data);
    return result;
}

static PyObject *scan_metrics(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer data;
    PyObject *names;
    if (!PyArg_ParseTuple(args, "y*O!:scan_metrics", &data, &PyDict_Type, &names))
        return NULL;
    Scan s = {0};
    s.names = names;
    s.time.size = s.value.size = sizeof(uint64_t);
    s.kind.size = s.field.size = 1;
    s.group.size = sizeof(int32_t);
    s.groups.size = sizeof(Group);
    PyObject *result = NULL;
    int status = OK;
    s.resources = PyList_New(0);
    s.items = PyList_New(0);
    s.table = PyMem_Calloc(64, sizeof(int32_t));
    s.table_size = 64;
    if (s.resources == NULL || s.items == NULL || s.table == NULL) {
        if (s.table == NULL)
            PyErr_NoMemory();
        status = ERROR;
    }
    Reader r = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len}, sub;
    uint32_t number;
    while (status == OK && (status = next_len_in(&r, 1u << 1, &number, &sub)) == OK)
        status = scan_resource_metrics(&s, sub); /* ExportMetricsServiceRequest.resource_metrics */
    if (status == DONE)
        status = OK;
    if (status == OK)
        result = scan_result(&s);
    else if (!PyErr_Occurred())
        result = Py_NewRef(Py_None); /* unusual or malformed: upb and the Python path decide */
    release_scan(&s);
    PyBuffer_Release(&data);
    return result;
}

/* --- the join ------------------------------------------------------------------------------ */

typedef struct {
    int column; /* 0..12 a gpu_samples column; -1 a process's memory, -2 its SM share */
    double low, high;
} Bound;

static int read_bounds(PyObject *seq, Bound *bounds, Py_ssize_t *count) {
    PyObject *fast = PySequence_Fast(seq, "bounds must be a sequence");
    if (fast == NULL)
        return ERROR;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > N_FIELDS) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "at most 64 fields");
        return ERROR;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "idd", &bounds[i].column, &bounds[i].low,
                              &bounds[i].high)) {
            Py_DECREF(fast);
            return ERROR;
        }
        if (bounds[i].column < -2 || bounds[i].column >= N_COLUMNS) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "a column is -2..12");
            return ERROR;
        }
    }
    Py_DECREF(fast);
    *count = n;
    return OK;
}

/* v (in 0..2**63, checked) rounded half to even, as Python's round() and nearbyint() in the
 * default mode do, without a call into libm: below 2**53 the fraction is exact, above it every
 * double is whole. */
static inline uint64_t round_half_even(double v) {
    uint64_t whole = (uint64_t)v;
    double fraction = v - (double)whole;
    if (fraction > 0.5 || (fraction == 0.5 && (whole & 1)))
        whole++;
    return whole;
}

static uint64_t mix(int32_t gpu, uint64_t time) {
    uint64_t h = (time ^ ((uint64_t)(uint32_t)gpu << 40)) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 31);
}

typedef struct {
    Py_buffer time, value, kind, field, group, group_gpu, group_pid;
} Inputs;

/* A process's point: its row, pid, value, and which share it is. */
typedef struct {
    int32_t row;
    uint32_t pid;
    uint64_t value;
    uint8_t is_sm;
} Proc;

/* `procs` (in point order) ordered by row, then pid, then point order, as a sort on those
 * three would: a counting sort on the row (rows are 0..rows-1, and stable), then insertion
 * sort on the pid within each row (a row has a process or two). A tenth of qsort's time. */
static int order_procs(Proc *procs, Py_ssize_t count, Py_ssize_t rows) {
    Py_ssize_t *start = PyMem_Calloc(rows + 1, sizeof(Py_ssize_t));
    Proc *sorted = PyMem_Malloc((count + 1) * sizeof(Proc));
    if (start == NULL || sorted == NULL) {
        PyMem_Free(start);
        PyMem_Free(sorted);
        PyErr_NoMemory();
        return ERROR;
    }
    for (Py_ssize_t i = 0; i < count; i++)
        start[procs[i].row + 1]++;
    for (Py_ssize_t row = 0; row < rows; row++)
        start[row + 1] += start[row];
    for (Py_ssize_t i = 0; i < count; i++)
        sorted[start[procs[i].row]++] = procs[i];
    for (Py_ssize_t i = 1; i < count; i++) {
        Proc p = sorted[i];
        Py_ssize_t j = i;
        while (j > 0 && sorted[j - 1].row == p.row && sorted[j - 1].pid > p.pid) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = p;
    }
    memcpy(procs, sorted, count * sizeof(Proc));
    PyMem_Free(start);
    PyMem_Free(sorted);
    return OK;
}

/* Each row's processes by pid (the order of proc_pids), the last point of each share
 * winning, 0 where a process has none: (offsets, pids, memory, SM share) as Arrow buffers. */
static PyObject *process_lists(Proc *procs, Py_ssize_t count, Py_ssize_t rows) {
    if (order_procs(procs, count, rows) != OK)
        return NULL;
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        distinct += i == 0 || procs[i].row != procs[i - 1].row || procs[i].pid != procs[i - 1].pid;
    PyObject *offsets = PyBytes_FromStringAndSize(NULL, (rows + 1) * sizeof(int32_t));
    PyObject *pids = PyBytes_FromStringAndSize(NULL, distinct * sizeof(uint32_t));
    PyObject *mem = PyBytes_FromStringAndSize(NULL, distinct * sizeof(uint64_t));
    PyObject *sm = PyBytes_FromStringAndSize(NULL, distinct);
    if (!offsets || !pids || !mem || !sm) {
        Py_XDECREF(offsets);
        Py_XDECREF(pids);
        Py_XDECREF(mem);
        Py_XDECREF(sm);
        return NULL;
    }
    int32_t *offset = (int32_t *)PyBytes_AS_STRING(offsets);
    uint32_t *pid = (uint32_t *)PyBytes_AS_STRING(pids);
    uint64_t *mem_of = (uint64_t *)PyBytes_AS_STRING(mem);
    uint8_t *sm_of = (uint8_t *)PyBytes_AS_STRING(sm);
    Py_ssize_t k = -1, i = 0;
    for (Py_ssize_t row = 0; row < rows; row++) {
        offset[row] = (int32_t)(k + 1);
        for (; i < count && procs[i].row == row; i++) {
            if (k < 0 || i == 0 || procs[i].row != procs[i - 1].row || procs[i].pid != procs[i - 1].pid) {
                k++;
                pid[k] = procs[i].pid;
                mem_of[k] = 0;
                sm_of[k] = 0;
            }
            if (procs[i].is_sm)
                sm_of[k] = (uint8_t)procs[i].value;
            else
                mem_of[k] = procs[i].value;
        }
    }
    offset[rows] = (int32_t)(k + 1);
    return Py_BuildValue("(NNNN)", offsets, pids, mem, sm);
}

static void release_inputs(Inputs *in) {
    Py_buffer *all[] = {&in->time, &in->value, &in->kind, &in->field, &in->group, &in->group_gpu, &in->group_pid};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]->obj != NULL)
            PyBuffer_Release(all[i]);
}

static PyObject *join_points(PyObject *module, PyObject *args) {
    (void)module;
    Inputs in = {0};
    PyObject *bounds_seq, *widths_seq;
    unsigned long long latest, oldest;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*OOKK:join_points", &in.time, &in.value, &in.kind, &in.field,
                          &in.group, &in.group_gpu, &in.group_pid, &bounds_seq, &widths_seq, &latest, &oldest))
        return NULL;
    PyObject *result = NULL;
    Bound bounds[N_FIELDS];
    Py_ssize_t n_bounds = 0;
    int widths[N_COLUMNS];
    uint8_t *codes = NULL;
    int32_t *row_of = NULL, *row_gpu = NULL, *row_group = NULL, *table = NULL;
    uint64_t *row_time = NULL;
    Vec procs = {NULL, 0, 0, sizeof(Proc)};
    PyObject *lists = NULL;
    PyObject *columns = NULL;

    Py_ssize_t n = in.time.len / 8;
    Py_ssize_t n_groups = in.group_gpu.len / 4;
    if (in.value.len != n * 8 || in.kind.len != n || in.field.len != n || in.group.len != n * 4 ||
        in.group_pid.len != n_groups * 8) {
        PyErr_SetString(PyExc_ValueError, "point columns of different lengths");
        goto done;
    }
    if (read_bounds(bounds_seq, bounds, &n_bounds) != OK)
        goto done;
    if (!PyArg_ParseTuple(widths_seq, "iiiiiiiiiiiii", &widths[0], &widths[1], &widths[2], &widths[3],
                          &widths[4], &widths[5], &widths[6], &widths[7], &widths[8], &widths[9], &widths[10],
                          &widths[11], &widths[12]))
        goto done;
    for (int c = 0; c < N_COLUMNS; c++) {
        if (widths[c] != 1 && widths[c] != 2 && widths[c] != 4 && widths[c] != 8) {
            PyErr_SetString(PyExc_ValueError, "a width is 1, 2, 4 or 8 bytes");
            goto done;
        }
    }
    const uint64_t *time = in.time.buf;
    const double *value = in.value.buf;
    const uint8_t *kind = in.kind.buf, *field = in.field.buf;
    const int32_t *group = in.group.buf, *group_gpu = in.group_gpu.buf;
    const int64_t *group_pid = in.group_pid.buf;

    Py_ssize_t size = 64;
    while (size < 2 * n)
        size *= 2;
    codes = PyMem_Malloc(n + 1);
    row_of = PyMem_Malloc((n + 1) * sizeof(int32_t));
    row_gpu = PyMem_Malloc((n + 1) * sizeof(int32_t));
    row_group = PyMem_Malloc((n + 1) * sizeof(int32_t));
    row_time = PyMem_Malloc((n + 1) * sizeof(uint64_t));
    table = PyMem_Calloc(size, sizeof(int32_t));
    if (!codes || !row_of || !row_gpu || !row_group || !row_time || !table) {
        PyErr_NoMemory();
        goto done;
    }

    /* Pass 1: each point checked, each accepted one given its row. */
    Py_ssize_t rows = 0, rejected = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t g = group[i];
        if (g < 0 || g >= n_groups || field[i] >= n_bounds) {
            PyErr_SetString(PyExc_ValueError, "a point's set or field is out of range");
            goto done;
        }
        const Bound *b = &bounds[field[i]];
        uint64_t t = time[i];
        double v = value[i];
        uint8_t code = REASON_NONE;
        if (group_gpu[g] < 0)
            code = REASON_NO_UUID;
        else if (t == 0 || t > latest || t < oldest)
            code = REASON_TIME;
        else if (kind[i] == V_NONE || !isfinite(v))
            code = REASON_VALUE;
        else if (b->column < 0 && group_pid[g] < 0)
            code = REASON_PID;
        else if (!(v >= b->low && v <= b->high))
            code = REASON_RANGE;
        codes[i] = code;
        if (code != REASON_NONE) {
            rejected++;
            row_of[i] = -1;
            continue;
        }
        int32_t gpu = group_gpu[g];
        Py_ssize_t at = mix(gpu, t) & (size - 1);
        int32_t row;
        for (;;) {
            int32_t entry = table[at];
            if (entry == 0) {
                row = (int32_t)rows++;
                table[at] = row + 1;
                row_gpu[row] = gpu;
                row_time[row] = t;
                row_group[row] = g;
                break;
            }
            if (row_gpu[entry - 1] == gpu && row_time[entry - 1] == t) {
                row = entry - 1;
                break;
            }
            at = (at + 1) & (size - 1);
        }
        row_of[i] = row;
    }

    /* Pass 2: the values, the last point of a field in a row winning. */
    columns = PyList_New(N_COLUMNS);
    if (columns == NULL)
        goto done;
    uint8_t *data[N_COLUMNS], *valid[N_COLUMNS];
    PyObject *data_bytes[N_COLUMNS], *valid_bytes[N_COLUMNS];
    Py_ssize_t bitmap = (rows + 7) / 8;
    for (int c = 0; c < N_COLUMNS; c++) {
        data_bytes[c] = PyBytes_FromStringAndSize(NULL, rows * widths[c]);
        valid_bytes[c] = PyBytes_FromStringAndSize(NULL, bitmap);
        if (data_bytes[c] == NULL || valid_bytes[c] == NULL) {
            Py_XDECREF(data_bytes[c]);
            Py_XDECREF(valid_bytes[c]);
            for (int k = 0; k < c; k++) {
                Py_DECREF(data_bytes[k]);
                Py_DECREF(valid_bytes[k]);
            }
            goto done;
        }
        data[c] = (uint8_t *)PyBytes_AS_STRING(data_bytes[c]);
        valid[c] = (uint8_t *)PyBytes_AS_STRING(valid_bytes[c]);
        memset(data[c], 0, rows * widths[c]);
        memset(valid[c], 0, bitmap);
    }
    int failed = 0;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        int32_t row = row_of[i];
        if (row < 0)
            continue;
        const Bound *b = &bounds[field[i]];
        if (b->column < 0) {
            /* A process's share: whole units, truncated, as int() does. */
            Proc proc = {row, (uint32_t)group_pid[group[i]], (uint64_t)value[i], (uint8_t)(b->column == -2)};
            failed = VEC_PUSH(procs, Proc, proc) != OK;
            continue;
        }
        /* Every stored GPU field is a whole number, rounded half to even as round() does. */
        uint64_t stored = round_half_even(value[i]);
        int c = b->column;
        uint8_t *at = data[c] + (Py_ssize_t)row * widths[c];
        switch (widths[c]) {
        case 1: *at = (uint8_t)stored; break;
        case 2: { uint16_t w = (uint16_t)stored; memcpy(at, &w, 2); break; }
        case 4: { uint32_t w = (uint32_t)stored; memcpy(at, &w, 4); break; }
        default: memcpy(at, &stored, 8);
        }
        valid[c][row >> 3] |= (uint8_t)(1u << (row & 7));
    }
    for (int c = 0; c < N_COLUMNS; c++) {
        Py_ssize_t present = 0;
        for (Py_ssize_t k = 0; k < bitmap; k++)
            present += __builtin_popcount(valid[c][k]);
        PyObject *column = Py_BuildValue("(NNn)", data_bytes[c], valid_bytes[c], rows - present);
        if (column == NULL) {
            for (int k = c + 1; k < N_COLUMNS; k++) {
                Py_DECREF(data_bytes[k]);
                Py_DECREF(valid_bytes[k]);
            }
            goto done;
        }
        PyList_SET_ITEM(columns, c, column);
    }
    if (failed || (lists = process_lists((Proc *)procs.data, procs.len, rows)) == NULL)
        goto done;
    result = Py_BuildValue("(y#nny#y#y#OO)", (const char *)codes, n, rejected, rows, (const char *)row_time,
                           rows * (Py_ssize_t)sizeof(uint64_t), (const char *)row_gpu,
                           rows * (Py_ssize_t)sizeof(int32_t), (const char *)row_group,
                           rows * (Py_ssize_t)sizeof(int32_t), columns, lists);
done:
    Py_XDECREF(columns);
    PyMem_Free(codes);
    PyMem_Free(row_of);
    PyMem_Free(row_gpu);
    PyMem_Free(row_group);
    PyMem_Free(row_time);
    PyMem_Free(table);
    Py_XDECREF(lists);
    PyMem_Free(procs.data);
    release_inputs(&in);
    return result;
}


/* --- the Arrow batch ------------------------------------------------------------------------ */

/* The Arrow C data interface (arrow/c/abi.h): pyarrow imports the rows from it in one call,
 * where building them from Python costs ≈ 40 pyarrow objects a request. */
struct ArrowArray {
    int64_t length, null_count, offset, n_buffers, n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

#define N_ROW_FIELDS 23 /* gpu_samples' columns, in api/ingest/metrics.py GPU_SCHEMA order */
#define N_LISTS 3

/* Everything a batch owns, in one allocation that the root's release frees. */
typedef struct {
    struct ArrowArray root, fields[N_ROW_FIELDS], values[N_LISTS];
    struct ArrowArray *field_ptrs[N_ROW_FIELDS], *value_ptrs[N_LISTS];
    const void *buffers[N_ROW_FIELDS + N_LISTS][3];
    const void *root_buffers[1];
    char *memory;
} Batch;

static void release_child(struct ArrowArray *array) { array->release = NULL; }

static void release_batch(struct ArrowArray *array) {
    Batch *batch = array->private_data;
    PyMem_RawFree(batch->memory);
    PyMem_RawFree(batch); /* `array` is batch->root, or a moved copy of it */
    array->release = NULL;
}

/* Bump allocation in the batch's memory, 64-byte aligned as Arrow prefers. */
typedef struct {
    char *at, *end;
} Arena;

static void *take_bytes(Arena *arena, Py_ssize_t n) {
    char *p = arena->at;
    arena->at += (n + 63) & ~(Py_ssize_t)63;
    return p;
}

static struct ArrowArray *plain(Batch *b, int i, int64_t length, int64_t nulls, const void *valid, const void *data) {
    struct ArrowArray *a = &b->fields[i];
    b->buffers[i][0] = valid;
    b->buffers[i][1] = data;
    *a = (struct ArrowArray){length, nulls, 0, 2, 0, b->buffers[i], NULL, NULL, release_child, NULL};
    return a;
}

/* UTF-8 of each text in `texts` (a list of str): pointers and lengths, borrowed from the str. */
static int utf8_of(PyObject *texts, const char ***out, Py_ssize_t **lens) {
    Py_ssize_t n = PyList_GET_SIZE(texts);
    *out = PyMem_Malloc((n + 1) * sizeof(char *));
    *lens = PyMem_Malloc((n + 1) * sizeof(Py_ssize_t));
    if (*out == NULL || *lens == NULL) {
        PyErr_NoMemory();
        return ERROR;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        if (!PyUnicode_Check(text)) {
            PyErr_SetString(PyExc_TypeError, "texts must be str");
            return ERROR;
        }
        (*out)[i] = PyUnicode_AsUTF8AndSize(text, &(*lens)[i]);
        if ((*out)[i] == NULL)
            return ERROR;
    }
    return OK;
}

/* A string column: row k holds text[ids[k]]. */
static void strings(Batch *b, int i, Arena *arena, int64_t n, const int32_t *ids, const char **text,
                    const Py_ssize_t *lens, Py_ssize_t chars) {
    int32_t *offsets = take_bytes(arena, (n + 1) * sizeof(int32_t));
    char *data = take_bytes(arena, chars), *at = data;
    offsets[0] = 0;
    for (int64_t k = 0; k < n; k++) {
        memcpy(at, text[ids[k]], lens[ids[k]]);
        at += lens[ids[k]];
        offsets[k + 1] = (int32_t)(at - data);
    }
    b->buffers[i][0] = NULL;
    b->buffers[i][1] = offsets;
    b->buffers[i][2] = data;
    b->fields[i] = (struct ArrowArray){n, 0, 0, 3, 0, b->buffers[i], NULL, NULL, release_child, NULL};
}

static Py_ssize_t text_bytes(int64_t n, const int32_t *ids, const Py_ssize_t *lens) {
    Py_ssize_t total = 0;
    for (int64_t k = 0; k < n; k++)
        total += lens[ids[k]];
    return total;
}

/* arrow_batch(n, row_ns, row_gpu, row_set, clusters, hosts, uuids, gpu_of_text..., labels,
 * set_index, set_name, set_deployment, columns, widths, procs) -> address of an ArrowArray
 * (a struct of gpu_samples' columns) for pyarrow.RecordBatch._import_from_c. */
static PyObject *arrow_batch(PyObject *module, PyObject *args) {
    (void)module;
    Py_ssize_t n;
    Py_buffer row_ns = {0}, row_gpu = {0}, row_set = {0}, set_index = {0}, set_name = {0}, set_deployment = {0};
    PyObject *gpu_texts, *labels, *columns, *widths_seq, *procs;
    if (!PyArg_ParseTuple(args, "ny*y*y*O!O!y*y*y*O!OO!:arrow_batch", &n, &row_ns, &row_gpu, &row_set,
                          &PyList_Type, &gpu_texts, &PyList_Type, &labels, &set_index, &set_name, &set_deployment,
                          &PyList_Type, &columns, &widths_seq, &PyTuple_Type, &procs))
        return NULL;
    PyObject *result = NULL;
    Batch *b = NULL;
    const char **gpu_text = NULL, **label_text = NULL;
    Py_ssize_t *gpu_len = NULL, *label_len = NULL;
    int32_t *ids = NULL;
    Py_buffer proc[4] = {{0}};
    int widths[N_COLUMNS];
    Py_ssize_t n_sets = set_index.len / 8, n_gpus = PyList_GET_SIZE(gpu_texts) / 3;
    const int32_t *gpu = row_gpu.buf, *first = row_set.buf;
    if (n < 0 || row_ns.len != n * 8 || row_gpu.len != n * 4 || row_set.len != n * 4 || set_name.len != n_sets * 8 ||
        set_deployment.len != n_sets * 8 || PyList_GET_SIZE(columns) != N_COLUMNS || PyTuple_GET_SIZE(procs) != 4 ||
        PyList_GET_SIZE(gpu_texts) != n_gpus * 3) {
        PyErr_SetString(PyExc_ValueError, "arrow_batch: inputs of different lengths");
        goto done;
    }
    if (!PyArg_ParseTuple(widths_seq, "iiiiiiiiiiiii", &widths[0], &widths[1], &widths[2], &widths[3], &widths[4],
                          &widths[5], &widths[6], &widths[7], &widths[8], &widths[9], &widths[10], &widths[11],
                          &widths[12]))
        goto done;
    for (int c = 0; c < N_COLUMNS; c++) {
        if (widths[c] != 1 && widths[c] != 2 && widths[c] != 4 && widths[c] != 8) {
            PyErr_SetString(PyExc_ValueError, "a width is 1, 2, 4 or 8 bytes");
            goto done;
        }
    }
    for (int k = 0; k < 4; k++)
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(procs, k), &proc[k], PyBUF_SIMPLE) != 0)
            goto done;
    Py_ssize_t n_procs = proc[1].len / 4;
    if (proc[0].len != (n + 1) * 4 || proc[2].len != n_procs * 8 || proc[3].len != n_procs) {
        PyErr_SetString(PyExc_ValueError, "arrow_batch: process lists of different lengths");
        goto done;
    }
    if (utf8_of(gpu_texts, &gpu_text, &gpu_len) != OK || utf8_of(labels, &label_text, &label_len) != OK)
        goto done;
    Py_ssize_t n_labels = PyList_GET_SIZE(labels);
    ids = PyMem_Malloc((3 * n + 1) * sizeof(int32_t)); /* per row: cluster, host, uuid text ids */
    if (ids == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const int64_t *index_of = set_index.buf, *name_of = set_name.buf, *deployment_of = set_deployment.buf;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (gpu[k] < 0 || gpu[k] >= n_gpus || first[k] < 0 || first[k] >= n_sets ||
            name_of[first[k]] < 0 || name_of[first[k]] >= n_labels || deployment_of[first[k]] < 0 ||
            deployment_of[first[k]] >= n_labels) {
            PyErr_SetString(PyExc_ValueError, "arrow_batch: an id out of range");
            goto done;
        }
    }
    /* Sizes first, then one allocation. */
    Py_ssize_t total = 64 * 64;
    int32_t *part_ids[5];
    for (int c = 0; c < 3; c++) {
        part_ids[c] = ids + c * n;
        for (Py_ssize_t k = 0; k < n; k++)
            part_ids[c][k] = gpu[k] * 3 + c;
        total += (n + 1) * 4 + text_bytes(n, part_ids[c], gpu_len) + 128;
    }
    total += 8 * n + 2 * n + 128 * 2;
    Py_ssize_t label_chars = 0;
    for (Py_ssize_t k = 0; k < n; k++)
        label_chars += label_len[name_of[first[k]]] + label_len[deployment_of[first[k]]];
    total += 2 * ((n + 1) * 4 + 64 + 4 * n) + label_chars + 128;
    for (int c = 0; c < N_COLUMNS; c++)
        total += n * widths[c] + (n + 7) / 8 + 128;
    total += proc[0].len + proc[1].len + proc[2].len + proc[3].len + 4 * 64;
    b = PyMem_RawCalloc(1, sizeof(Batch));
    char *memory = b == NULL ? NULL : PyMem_RawMalloc(total + 64);
    if (memory == NULL) {
        PyMem_RawFree(b);
        b = NULL;
        PyErr_NoMemory();
        goto done;
    }
    b->memory = memory;
    Arena arena = {(char *)(((uintptr_t)memory + 63) & ~(uintptr_t)63), memory + total + 64};

    /* time (ms), cluster, host, gpu_uuid, gpu_index, gpu_name, deployment */
    int64_t *ms = take_bytes(&arena, n * 8);
    const uint64_t *ns = row_ns.buf;
    for (Py_ssize_t k = 0; k < n; k++)
        ms[k] = (int64_t)(ns[k] / 1000000u);
    plain(b, 0, n, 0, NULL, ms);
    for (int c = 0; c < 3; c++)
        strings(b, 1 + c, &arena, n, part_ids[c], gpu_text, gpu_len, text_bytes(n, part_ids[c], gpu_len));
    uint16_t *index = take_bytes(&arena, n * 2);
    int32_t *name_ids = take_bytes(&arena, n * 4), *deployment_ids = take_bytes(&arena, n * 4);
    for (Py_ssize_t k = 0; k < n; k++) {
        index[k] = (uint16_t)index_of[first[k]];
        name_ids[k] = (int32_t)name_of[first[k]];
        deployment_ids[k] = (int32_t)deployment_of[first[k]];
    }
    plain(b, 4, n, 0, NULL, index);
    strings(b, 5, &arena, n, name_ids, label_text, label_len, text_bytes(n, name_ids, label_len));
    strings(b, 6, &arena, n, deployment_ids, label_text, label_len, text_bytes(n, deployment_ids, label_len));
    /* the 13 measurements, with their validity */
    for (int c = 0; c < N_COLUMNS; c++) {
        PyObject *column = PyList_GET_ITEM(columns, c);
        Py_buffer data, valid;
        Py_ssize_t nulls;
        if (!PyArg_ParseTuple(column, "y*y*n", &data, &valid, &nulls))
            goto done;
        int ok = data.len == n * widths[c] && valid.len == (n + 7) / 8 && nulls >= 0 && nulls <= n;
        void *d = take_bytes(&arena, n * widths[c]), *v = take_bytes(&arena, (n + 7) / 8);
        if (ok) {
            memcpy(d, data.buf, data.len);
            memcpy(v, valid.buf, valid.len);
        }
        PyBuffer_Release(&data);
        PyBuffer_Release(&valid);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "arrow_batch: a column of another length");
            goto done;
        }
        plain(b, 7 + c, n, nulls, nulls ? v : NULL, d);
    }
    /* the process lists: one offsets buffer, three value arrays */
    int32_t *offsets = take_bytes(&arena, proc[0].len);
    memcpy(offsets, proc[0].buf, proc[0].len);
    for (int l = 0; l < N_LISTS; l++) {
        void *values = take_bytes(&arena, proc[1 + l].len);
        memcpy(values, proc[1 + l].buf, proc[1 + l].len);
        int i = 7 + N_COLUMNS + l;
        b->buffers[N_ROW_FIELDS + l][0] = NULL;
        b->buffers[N_ROW_FIELDS + l][1] = values;
        b->values[l] = (struct ArrowArray){n_procs, 0, 0, 2, 0, b->buffers[N_ROW_FIELDS + l], NULL, NULL,
                                           release_child, NULL};
        b->value_ptrs[l] = &b->values[l];
        b->buffers[i][0] = NULL;
        b->buffers[i][1] = offsets;
        b->fields[i] = (struct ArrowArray){n, 0, 0, 2, 1, b->buffers[i], &b->value_ptrs[l], NULL, release_child,
                                           NULL};
    }
    for (int i = 0; i < N_ROW_FIELDS; i++)
        b->field_ptrs[i] = &b->fields[i];
    b->root_buffers[0] = NULL;
    b->root = (struct ArrowArray){n, 0, 0, 1, N_ROW_FIELDS, b->root_buffers, b->field_ptrs, NULL, release_batch, b};
    result = PyLong_FromVoidPtr(&b->root);
    if (result != NULL)
        b = NULL; /* pyarrow owns it now: its release frees it */
done:
    if (b != NULL) {
        PyMem_RawFree(b->memory);
        PyMem_RawFree(b);
    }
    PyMem_Free(gpu_text);
    PyMem_Free(gpu_len);
    PyMem_Free(label_text);
    PyMem_Free(label_len);
    PyMem_Free(ids);
    for (int k = 0; k < 4; k++)
        if (proc[k].obj != NULL)
            PyBuffer_Release(&proc[k]);
    PyBuffer_Release(&row_ns);
    PyBuffer_Release(&row_gpu);
    PyBuffer_Release(&row_set);
    PyBuffer_Release(&set_index);
    PyBuffer_Release(&set_name);
    PyBuffer_Release(&set_deployment);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_metrics", scan_metrics, METH_VARARGS,
     "scan_metrics(data, names) -> (resources, items, sets, set_resource, time, value, kind, field, set, "
     "points) or None"},
    {"join_points", join_points, METH_VARARGS,
     "join_points(time, value, kind, field, set, set_gpu, set_pid, bounds, widths, latest_ns, oldest_ns) -> "
     "(reasons, rejected, rows, row_ns, row_gpu, row_set, columns, (proc_offsets, proc_pids, proc_mem, "
     "proc_sm))"},
    {"arrow_batch", arrow_batch, METH_VARARGS,
     "arrow_batch(n, row_ns, row_gpu, row_set, gpu_texts, labels, set_index, set_name, set_deployment, "
     "columns, widths, procs) -> address of an ArrowArray for pyarrow.RecordBatch._import_from_c"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_metrics", "OTLP metrics requests: GPU points read from the protobuf wire format.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__metrics(void) { return PyModule_Create(&module); }
