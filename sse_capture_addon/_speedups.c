/* Optional accelerators (sse.py and recording.py do the same work without them; tests run both ways).

   exact_json(buf) -> bool

   True when buf is one JSON object or array that orjson.dumps(orjson.loads(value)) gives back byte for byte,
   so that the recorder may store the data as it came instead of parsing it into Python objects and serialising
   it again: that round trip is most of what recording a token stream costs.

   False means "not proven": the caller then decides with orjson itself. So everything this scanner is not
   sure orjson reproduces exactly is refused: any whitespace, exponents, integers beyond 64 bits, "-0",
   escapes other than the ones orjson writes, duplicate keys, objects of more than MAX_KEYS keys, nesting
   deeper than MAX_DEPTH, invalid UTF-8. A scan is one pass over the bytes, with no allocation.

   exact_lines(blocks, count, head) -> bytes | None

   The event lines of a MessageBatch (blocks = its count "data: DATA\n\n" blocks) when every DATA is exact
   (as exact_json): head + DATA + "}\n" for each, scanned and copied in one pass; None when one is not.

   token_chunk(blocks, count, t, n, crlf=False) -> bytes | None

   What the recorder writes for a chunk that is a MessageBatch's blocks (a token stream's chunk, no last event
   ID): the chunk line, {"t":T,"kind":"chunk","n":N,"blocks":COUNT}, then exact_lines with the head of a message
   event at T (T as "%.6f" formats t); None when exact_lines would give None. One buffer, no Python formatting:
   on a live proxy the caches are cold when a chunk arrives, and each call and format costs 3-4x what a loop
   measures.

   typed_chunk(blocks, count, t, n) -> bytes | None

   The same for a chunk of "event: TYPE\n" + "data: DATA\n\n" blocks (Anthropic's shape), whose event lines carry
   the TYPE: {"t":T,"kind":"event","event":"TYPE","data":DATA}.

   simple_blocks(parser, buf, crlf) -> list | None

   SSEParser's fast path for a chunk of whole blocks as token streams send them: an "event:" line and/or an
   "id:" line (either order, each at most once; an id without NUL), then "data:" lines and a blank line (LF
   endings, UTF-8; crlf: the chunk had CRLF endings, made LF): their Events, each with the last event ID its
   block leaves (starting from parser.last_event_id; when "id:" lines change it, parser.last_event_id and
   parser._id_buffer are set, as the Python parser would), or when parser.message_batches and every block is
   one "data: " line, one MessageBatch of the chunk itself; the lines read are counted in parser.line_endings.
   None for anything else (nothing counted, nothing set), which the Python parser then handles: it gives the
   same result for what this accepts.

   ParserCore

   SSEParser's base class: the state its feed() reads, in slots, and feed() itself (SSEParser._feed_py in C),
   which hands what simple_blocks does not take to the Python methods. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 128 /* orjson.dumps refuses more than 254 levels; well within that */
#define MAX_KEYS 32   /* duplicate keys are looked for pairwise, so bigger objects are left to orjson */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    int depth;
} Scan;

static int value(Scan *s);

/* One UTF-8 sequence starting at a byte >= 0x80: valid, shortest form, no surrogates, <= U+10FFFF. */
static int utf8_sequence(Scan *s)
{
    const unsigned char *p = s->p;
    Py_ssize_t left = s->end - p;
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (left < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        s->p += 2;
        return 1;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
            return 0; /* overlong, or a surrogate */
        s->p += 3;
        return 1;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
            return 0; /* overlong, or beyond U+10FFFF */
        s->p += 4;
        return 1;
    }
    return 0;
}

static int hex_lower(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Bytes a string scan must stop at: '"', '\\', control characters and non-ASCII. */
static unsigned char string_stop[256];

static void init_string_stop(void)
{
    int c;
    for (c = 0; c < 256; c++)
        string_stop[c] = c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
}

/* A string at s->p (an opening quote) written the way orjson writes strings: raw UTF-8, and escapes only
   for '"', '\', and control characters (short forms \b \t \n \f \r, else \u00xx in lowercase hex). */
static int string(Scan *s)
{
    const unsigned char *p = s->p + 1, *end = s->end;
    while (p < end) {
        unsigned char c;
        while (end - p >= 4 && !(string_stop[p[0]] | string_stop[p[1]] | string_stop[p[2]] | string_stop[p[3]]))
            p += 4;
        while (p < end && !string_stop[*p])
            p++;
        if (p == end)
            break;
        c = *p;
        if (c == '"') {
            s->p = p + 1;
            return 1;
        }
        if (c < 0x20)
            return 0; /* a raw control character: invalid JSON */
        if (c == '\\') {
            if (end - p < 2)
                return 0;
            switch (p[1]) {
            case '"': case '\\': case 'b': case 't': case 'n': case 'f': case 'r':
                p += 2;
                continue;
            case 'u': {
                int hi, lo, code;
                if (end - p < 6 || p[2] != '0' || p[3] != '0')
                    return 0;
                hi = hex_lower(p[4]);
                lo = hex_lower(p[5]);
                if (hi < 0 || lo < 0)
                    return 0;
                code = hi * 16 + lo;
                if (code >= 0x20 || code == '\b' || code == '\t' || code == '\n' || code == '\f' || code == '\r')
                    return 0; /* orjson writes these raw or in their short form */
                p += 6;
                continue;
            }
            default:
                return 0;
            }
        }
        if (c >= 0x80) {
            s->p = p;
            if (!utf8_sequence(s))
                return 0;
            p = s->p;
        }
    }
    return 0; /* unterminated */
}

/* A float with a fraction and no exponent, written as orjson writes it. For any double whose repr has no
   exponent, orjson's output is that repr (checked on 1.2 million random doubles); others are refused. */
static int fraction(const unsigned char *start, Py_ssize_t length)
{
    char token[40], *formatted;
    double x;
    int same;
    if (length >= (Py_ssize_t)sizeof(token))
        return 0;
    memcpy(token, start, length);
    token[length] = '\0';
    x = PyOS_string_to_double(token, NULL, NULL);
    if (x == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    formatted = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (formatted == NULL) {
        PyErr_Clear();
        return 0;
    }
    same = strlen(formatted) == (size_t)length && memcmp(formatted, token, length) == 0;
    PyMem_Free(formatted);
    return same;
}

/* orjson keeps integers from -2**63 to 2**64 - 1 as integers. */
static int within_64_bits(const unsigned char *digits, Py_ssize_t n, int negative)
{
    if (negative)
        return n < 19 || (n == 19 && memcmp(digits, "9223372036854775808", 19) <= 0);
    return n < 20 || (n == 20 && memcmp(digits, "18446744073709551615", 20) <= 0);
}

/* A number orjson writes back the same: an integer within 64 bits (not "-0"), or a float that ``fraction``
   accepts. */
static int number(Scan *s)
{
    const unsigned char *p = s->p, *end = s->end, *digits;
    if (*p == '-')
        p++;
    digits = p;
    if (p >= end || *p < '0' || *p > '9')
        return 0;
    if (*p == '0')
        p++;
    else
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    if (p < end && *p == '.') {
        const unsigned char *point = p++;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == point + 1 || (p < end && (*p == 'e' || *p == 'E')) || !fraction(s->p, p - s->p))
            return 0;
        s->p = p;
        return 1;
    }
    if (p - digits == 1 && *digits == '0' && digits != s->p)
        return 0; /* "-0" comes back as "0" */
    if (p - digits > 18 && !within_64_bits(digits, p - digits, digits != s->p))
        return 0; /* orjson reads it as a float */
    if (p < end && (*p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9')))
        return 0; /* an exponent, or a leading zero */
    s->p = p;
    return 1;
}

static int literal(Scan *s, const char *word, Py_ssize_t n)
{
    if (s->end - s->p < n || memcmp(s->p, word, n) != 0)
        return 0;
    s->p += n;
    return 1;
}

static int object(Scan *s)
{
    const unsigned char *keys[MAX_KEYS];
    Py_ssize_t lengths[MAX_KEYS];
    int nkeys = 0;
    s->p++;
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 1;
    }
    for (;;) {
        const unsigned char *key = s->p;
        Py_ssize_t length;
        int i;
        if (s->p >= s->end || *s->p != '"' || !string(s))
            return 0;
        length = s->p - key;
        if (nkeys == MAX_KEYS)
            return 0;
        /* Canonical escaping is one-to-one, so equal keys are equal bytes. */
        for (i = 0; i < nkeys; i++)
            if (lengths[i] == length && memcmp(keys[i], key, length) == 0)
                return 0; /* orjson keeps one of them */
        keys[nkeys] = key;
        lengths[nkeys++] = length;
        if (s->p >= s->end || *s->p != ':')
            return 0;
        s->p++;
        if (!value(s))
            return 0;
        if (s->p >= s->end)
            return 0;
        if (*s->p == '}') {
            s->p++;
            return 1;
        }
        if (*s->p != ',')
            return 0;
        s->p++;
    }
}

static int array(Scan *s)
{
    s->p++;
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 1;
    }
    for (;;) {
        if (!value(s) || s->p >= s->end)
            return 0;
        if (*s->p == ']') {
            s->p++;
            return 1;
        }
        if (*s->p != ',')
            return 0;
        s->p++;
    }
}

static int container(Scan *s)
{
    int ok;
    if (++s->depth > MAX_DEPTH)
        return 0;
    ok = *s->p == '{' ? object(s) : array(s);
    s->depth--;
    return ok;
}

static int value(Scan *s)
{
    if (s->p >= s->end)
        return 0;
    switch (*s->p) {
    case '{': case '[':
        return container(s);
    case '"':
        return string(s);
    case 't':
        return literal(s, "true", 4);
    case 'f':
        return literal(s, "false", 5);
    case 'n':
        return literal(s, "null", 4);
    default:
        return number(s);
    }
}

/* A JSON object or array at s->p (s->p is left after it). */
static int container_here(Scan *s)
{
    return s->p < s->end && (*s->p == '{' || *s->p == '[') && container(s);
}

static PyObject *exact_json(PyObject *module, PyObject *arg)
{
    Scan s;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "exact_json(buf: bytes)");
        return NULL;
    }
    s.p = (const unsigned char *)PyBytes_AS_STRING(arg);
    s.end = s.p + PyBytes_GET_SIZE(arg);
    s.depth = 0;
    return PyBool_FromLong(container_here(&s) && s.p == s.end);
}

/* Copies head + DATA + "}\n" for each of the count "data: DATA\n\n" blocks in [p, end) to w, which has room for
   exactly that (size - 8 * count + count * (head_len + 2) bytes); 0 when a DATA is not exact or the blocks are
   not count such blocks. Each block writes what it consumed less 8 bytes, plus head_len + 2, so a wrong count
   cannot write past w's room: the caller checks count <= size / 8 and that w ended where it should. */
#define CHUNK_HEAD_MAX 160 /* a chunk line: {"t":T,"kind":"chunk","n":N,"blocks":COUNT} */

static int copy_exact_lines(const unsigned char *p, const unsigned char *end, Py_ssize_t count, const char *head,
                            Py_ssize_t head_len, char *w, const char *w_end)
{
    Py_ssize_t i;
    for (i = 0; i < count; i++) {
        Scan s;
        if (end - p < 8 || memcmp(p, "data: ", 6) != 0)
            return 0;
        s.p = p + 6;
        s.end = end;
        s.depth = 0;
        if (!container_here(&s) || end - s.p < 2 || s.p[0] != '\n' || s.p[1] != '\n')
            return 0;
        memcpy(w, head, head_len);
        w += head_len;
        memcpy(w, p + 6, s.p - (p + 6));
        w += s.p - (p + 6);
        *w++ = '}';
        *w++ = '\n';
        p = s.p + 2;
    }
    return p == end && w == w_end;
}

/* prefix, then the lines copy_exact_lines writes for the count blocks of blocks with head; None when it fails. */
static PyObject *lines_after(const char *prefix, Py_ssize_t prefix_len, PyObject *blocks, Py_ssize_t count,
                             const char *head, Py_ssize_t head_len)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(blocks);
    Py_ssize_t size = PyBytes_GET_SIZE(blocks), out_size;
    PyObject *out;
    if (count < 1 || count > size / 8)
        Py_RETURN_NONE;
    out_size = prefix_len + size - 8 * count + count * (head_len + 2);
    if ((out = PyBytes_FromStringAndSize(NULL, out_size)) == NULL)
        return NULL;
    memcpy(PyBytes_AS_STRING(out), prefix, prefix_len);
    if (!copy_exact_lines(p, p + size, count, head, head_len, PyBytes_AS_STRING(out) + prefix_len,
                          PyBytes_AS_STRING(out) + out_size)) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

static PyObject *exact_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t count;
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "exact_lines(blocks: bytes, count: int, head: bytes)");
        return NULL;
    }
    count = PyLong_AsSsize_t(args[1]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    return lines_after("", 0, args[0], count, PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]));
}

/* The arguments (blocks: bytes, count: int, t: float, n: int) of token_chunk and typed_chunk, and token_chunk's
   crlf: bool = False (takes_crlf; typed_chunk reads LF blocks only), and the chunk line blocks_chunk_line writes
   for them in chunk_head (with crlf, for a chunk that was blocks with CRLF line endings); t_text is t as "%.6f" formats it (PyMem_Free it). 0 when t is
   out of the range the C path formats (then nothing is set and no exception either), -1 on an exception. */
static int chunk_args(const char *name, PyObject *const *args, Py_ssize_t nargs, int takes_crlf, Py_ssize_t *count,
                      char **t_text, char *chunk_head, int *chunk_len)
{
    Py_ssize_t n;
    double t;
    int crlf = 0;
    if (nargs < 4 || nargs > 4 + takes_crlf || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])
        || !PyLong_Check(args[3]) || (nargs == 5 && (crlf = PyObject_IsTrue(args[4])) < 0)) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s(blocks: bytes, count: int, t: float, n: int%s)", name,
                         takes_crlf ? ", crlf: bool = False" : "");
        return -1;
    }
    *count = PyLong_AsSsize_t(args[1]);
    if (*count == -1 && PyErr_Occurred())
        return -1;
    n = PyLong_AsSsize_t(args[3]);
    if (n == -1 && PyErr_Occurred())
        return -1;
    t = PyFloat_AsDouble(args[2]); /* a float, or what converts to one (a clock may give ints) */
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (!isfinite(t) || fabs(t) >= 1e15)
        return 0; /* what the Python path writes for such times is its business */
    /* what b"%.6f" % t gives: bytes formatting calls this with the same arguments */
    if ((*t_text = PyOS_double_to_string(t, 'f', 6, 0, NULL)) == NULL)
        return -1;
    *chunk_len = snprintf(chunk_head, CHUNK_HEAD_MAX, "{\"t\":%s,\"kind\":\"chunk\",\"n\":%zd,\"blocks\":%zd%s}\n",
                          *t_text, n, *count, crlf ? ",\"crlf\":true" : "");
    if (*chunk_len < 0 || *chunk_len >= CHUNK_HEAD_MAX) {
        PyMem_Free(*t_text);
        return 0;
    }
    return 1;
}

/* token_chunk: the chunk line of a chunk that is a MessageBatch's blocks with no last event ID, and then the
   batch's event lines, as blocks_chunk_line and message_lines write them, built in one buffer. */
static PyObject *token_chunk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t count;
    int chunk_len, head_len, ok;
    char *t_text, chunk_head[CHUNK_HEAD_MAX], head[96];
    if ((ok = chunk_args("token_chunk", args, nargs, 1, &count, &t_text, chunk_head, &chunk_len)) <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    head_len = snprintf(head, sizeof head, "{\"t\":%s,\"kind\":\"event\",\"event\":\"message\",\"data\":", t_text);
    PyMem_Free(t_text);
    if (head_len < 0 || head_len >= (int)sizeof head)
        Py_RETURN_NONE;
    return lines_after(chunk_head, chunk_len, args[0], count, head, head_len);
}

/* typed_chunk: the same for a chunk of count blocks "event: TYPE\ndata: DATA\n\n" (Anthropic's shape), when the
   stream has no last event ID: the chunk line, then {"t":T,"kind":"event","event":"TYPE","data":DATA} for each, as
   event_line_json writes it. None unless every TYPE is printable ASCII without '"' or '\\' (so that it is its own
   JSON string) and not "message" (whose block has no "event:" line in the default form), and every DATA is exact
   JSON (as exact_json). */
static PyObject *typed_chunk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char kind[] = ",\"kind\":\"event\",\"event\":\"", data_key[] = "\",\"data\":";
    const unsigned char *p, *end, *type, *q;
    Py_ssize_t count, i, t_len, out_size;
    int chunk_len, ok;
    char *t_text, chunk_head[CHUNK_HEAD_MAX], *w, *w_end;
    PyObject *out;
    Scan s;
    if ((ok = chunk_args("typed_chunk", args, nargs, 0, &count, &t_text, chunk_head, &chunk_len)) <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    t_len = (Py_ssize_t)strlen(t_text);
    p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    end = p + PyBytes_GET_SIZE(args[0]);
    /* each line is its block, "event: " TYPE "\n" "data: " DATA "\n\n", less those 16 bytes, and its own 16 */
    out_size = chunk_len + (end - p) + count * (5 + t_len + (Py_ssize_t)(sizeof kind - 1 + sizeof data_key - 1) + 2 - 16);
    if (count < 1 || count > (end - p) / 18 || (out = PyBytes_FromStringAndSize(NULL, out_size)) == NULL) {
        PyMem_Free(t_text);
        return count < 1 || count > (end - p) / 18 ? Py_NewRef(Py_None) : NULL;
    }
    w = PyBytes_AS_STRING(out);
    w_end = w + out_size;
    memcpy(w, chunk_head, chunk_len);
    w += chunk_len;
    for (i = 0; i < count; i++) {
        if (end - p < 18 || memcmp(p, "event: ", 7) != 0)
            goto refused;
        for (q = type = p + 7; q < end && *q != '\n'; q++)
            if (*q < 0x20 || *q > 0x7e || *q == '"' || *q == '\\')
                goto refused;
        if (q == type || end - q < 9 || (q - type == 7 && memcmp(type, "message", 7) == 0)
            || memcmp(q + 1, "data: ", 6) != 0)
            goto refused;
        s.p = q + 7;
        s.end = end;
        s.depth = 0;
        if (!container_here(&s) || end - s.p < 2 || s.p[0] != '\n' || s.p[1] != '\n'
            || w_end - w < 5 + t_len + (Py_ssize_t)(sizeof kind - 1) + (q - type) + (Py_ssize_t)(sizeof data_key - 1)
                           + (s.p - (q + 7)) + 2)
            goto refused;
        memcpy(w, "{\"t\":", 5);
        memcpy(w += 5, t_text, t_len);
        memcpy(w += t_len, kind, sizeof kind - 1);
        memcpy(w += sizeof kind - 1, type, q - type);
        memcpy(w += q - type, data_key, sizeof data_key - 1);
        memcpy(w += sizeof data_key - 1, q + 7, s.p - (q + 7));
        w += s.p - (q + 7);
        *w++ = '}';
        *w++ = '\n';
        p = s.p + 2;
    }
    if (p == end && w == w_end) {
        PyMem_Free(t_text);
        return out;
    }
refused:
    PyMem_Free(t_text);
    Py_DECREF(out);
    Py_RETURN_NONE;
}

/* --- simple_blocks ---------------------------------------------------------------------------------- */

static PyObject *event_type, *batch_type, *message_str;
static PyObject *cached_type; /* the last "event:" value decoded, reused while a stream repeats it */

static PyObject *set_types(PyObject *module, PyObject *args)
{
    PyObject *event, *batch;
    if (!PyArg_ParseTuple(args, "O!O!", &PyType_Type, &event, &PyType_Type, &batch))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)event, &PyTuple_Type) || !PyType_IsSubtype((PyTypeObject *)batch, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "set_types(Event, MessageBatch): tuple subclasses expected");
        return NULL;
    }
    Py_INCREF(event);
    Py_INCREF(batch);
    Py_XSETREF(event_type, event);
    Py_XSETREF(batch_type, batch);
    Py_RETURN_NONE;
}

static int valid_utf8(const unsigned char *p, const unsigned char *end)
{
    Scan s = {p, end, 0};
    while (s.p < end) {
        uint64_t word;
        if (end - s.p >= 8 && (memcpy(&word, s.p, 8), (word & 0x8080808080808080ULL) == 0))
            s.p += 8; /* eight ASCII bytes */
        else if (*s.p < 0x80)
            s.p++;
        else if (!utf8_sequence(&s))
            return 0;
    }
    return 1;
}

typedef struct {
    const char *type; /* NULL for a block without "event:" */
    Py_ssize_t type_len;
    const char *id; /* NULL for a block without "id:" */
    Py_ssize_t id_len;
    Py_ssize_t lines;
    const char *data; /* the first data line's value; the others follow it, each after an LF and "data:" */
    Py_ssize_t data_len; /* the values joined by LFs, as the event's data */
    Py_ssize_t data_lines;
    const char *next;
} Block;

/* The value of the field line at p, after its name (n bytes, with the colon) and one optional space; p moves to
   the next line. Whole blocks end with a blank line, so the line has an LF. */
static const char *field_value(const char **p, const char *end, Py_ssize_t n, Py_ssize_t *len)
{
    const char *value = *p + n, *eol;
    if (*value == ' ')
        value++;
    eol = memchr(value, '\n', end - value);
    *len = eol - value;
    *p = eol + 1;
    return value;
}

/* The block at p (whole blocks end at end, which is after a blank line): 1 when it has the shape: an "event:"
   and an "id:" line or either or neither, then "data:" lines. */
static int block_at(const char *p, const char *end, Block *b)
{
    const char *eol;
    int k;
    b->type = b->id = NULL;
    b->type_len = b->id_len = 0;
    b->lines = 2;
    for (k = 0; k < 2; k++, b->lines++) {
        if (b->type == NULL && end - p >= 6 && memcmp(p, "event:", 6) == 0)
            b->type = field_value(&p, end, 6, &b->type_len);
        else if (b->id == NULL && end - p >= 3 && memcmp(p, "id:", 3) == 0) {
            b->id = field_value(&p, end, 3, &b->id_len);
            if (memchr(b->id, '\0', b->id_len) != NULL)
                return 0; /* the parser ignores such an id, and says so */
        }
        else
            break;
    }
    if (end - p < 5 || memcmp(p, "data:", 5) != 0)
        return 0;
    b->data_len = -1;
    for (b->data_lines = 1;; b->data_lines++, b->lines++) {
        p += 5;
        if (*p == ' ')
            p++;
        eol = memchr(p, '\n', end - p);
        if (b->data_lines == 1)
            b->data = p;
        b->data_len += 1 + (eol - p);
        if (eol + 1 >= end)
            return 0; /* (whole blocks end with a blank line) */
        if (eol[1] == '\n')
            break;
        p = eol + 1;
        if (end - p < 5 || memcmp(p, "data:", 5) != 0)
            return 0; /* another field in the block */
    }
    b->next = eol + 2;
    return 1;
}

/* The block's data: its data lines' values joined by LFs (a text with LFs is sent as one "data:" line each). */
static PyObject *block_data(const Block *b)
{
    const char *p = b->data, *eol;
    char *joined, *q;
    PyObject *data;
    Py_ssize_t k;
    if (b->data_lines == 1)
        return PyUnicode_DecodeUTF8(b->data, b->data_len, "strict");
    if ((joined = q = PyMem_Malloc(b->data_len)) == NULL)
        return PyErr_NoMemory();
    for (k = 0; k < b->data_lines; k++) {
        if (k) {
            p += 5; /* "data:" */
            if (*p == ' ')
                p++;
            *q++ = '\n';
        }
        eol = memchr(p, '\n', b->next - p);
        memcpy(q, p, eol - p);
        q += eol - p;
        p = eol + 1;
    }
    data = PyUnicode_DecodeUTF8(joined, q - joined, "strict");
    PyMem_Free(joined);
    return data;
}

static PyObject *new_tuple(PyObject *type, Py_ssize_t n)
{
    return ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, n);
}

static PyObject *type_str(const Block *b)
{
    if (b->type == NULL || b->type_len == 0)
        return Py_NewRef(message_str);
    if (cached_type != NULL && PyUnicode_GET_LENGTH(cached_type) == b->type_len && PyUnicode_IS_ASCII(cached_type)
        && memcmp(PyUnicode_DATA(cached_type), b->type, b->type_len) == 0)
        return Py_NewRef(cached_type);
    PyObject *type = PyUnicode_DecodeUTF8(b->type, b->type_len, "strict");
    if (type != NULL && PyUnicode_IS_ASCII(type))
        Py_XSETREF(cached_type, Py_NewRef(type));
    return type;
}

/* --- ParserCore: SSEParser's base class ------------------------------------------------------------------

   The state SSEParser.feed reads, in slots, and feed() itself, which is SSEParser._feed_py step for step: a
   token stream's chunk then costs one C call, where the checks of a Python feed around the C fast path cost
   about as much as the fast path itself. The lines the fast path reads are counted in C (pending) and added to
   the line_endings dict whenever Python reads it. */

#define HOLD_MAX (64 * 1024) /* sse.py's _HOLD_MAX */

typedef struct {
    PyObject_HEAD
    PyObject *held, *c_ready, *started, *undecoded, *max_event_size, *message_batches, *line_endings;
    PyObject *last_event_id, *id_buffer;
    Py_ssize_t bytes_in, pending_lf, pending_crlf;
} ParserCore;

static PyTypeObject ParserCoreType;
static PyObject *empty_bytes, *lf_key, *crlf_key, *settle_name, *feed_text_name;

/* counts[key] += lines */
static int add_lines(PyObject *counts, PyObject *key, Py_ssize_t lines)
{
    PyObject *old = PyDict_GetItemWithError(counts, key), *sum;
    Py_ssize_t before = old == NULL ? 0 : PyLong_AsSsize_t(old);
    int failed;
    if ((old == NULL && PyErr_Occurred()) || (before == -1 && PyErr_Occurred()))
        return -1;
    if ((sum = PyLong_FromSsize_t(before + lines)) == NULL)
        return -1;
    failed = PyDict_SetItem(counts, key, sum);
    Py_DECREF(sum);
    return failed;
}

static int flush_lines(ParserCore *self)
{
    if (!self->pending_lf && !self->pending_crlf)
        return 0;
    if (!PyDict_Check(self->line_endings)) {
        PyErr_SetString(PyExc_TypeError, "SSEParser.line_endings must be a dict");
        return -1;
    }
    if ((self->pending_lf && add_lines(self->line_endings, lf_key, self->pending_lf) < 0)
        || (self->pending_crlf && add_lines(self->line_endings, crlf_key, self->pending_crlf) < 0))
        return -1;
    self->pending_lf = self->pending_crlf = 0;
    return 0;
}

/* simple_blocks for the first size bytes of buf (bytes). */
static PyObject *blocks_of(ParserCore *self, PyObject *buf, Py_ssize_t size, int crlf)
{
    const char *start, *end, *p;
    Py_ssize_t n = 0, i, lines = 0;
    int one_data_line = 1, ids = 0, batch = self->message_batches == Py_True;
    PyObject *last_event_id, *list;
    Block b;
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "simple_blocks: set_types() was not called");
        return NULL;
    }
    start = PyBytes_AS_STRING(buf);
    end = start + size;
    if (size < 2 || end[-1] != '\n' || end[-2] != '\n' || memchr(start, '\r', size) != NULL)
        Py_RETURN_NONE;
    for (p = start; p < end; p = b.next, n++) {
        if (!block_at(p, end, &b))
            Py_RETURN_NONE;
        one_data_line &= b.type == NULL && b.id == NULL && b.data_lines == 1 && p[5] == ' ';
        ids |= b.id != NULL;
        lines += b.lines;
    }
    if (one_data_line && batch && !valid_utf8((const unsigned char *)start, (const unsigned char *)end))
        Py_RETURN_NONE;
    if (!PyUnicode_Check(self->last_event_id)) {
        PyErr_SetString(PyExc_TypeError, "simple_blocks: parser.last_event_id must be a str");
        return NULL;
    }
    last_event_id = Py_NewRef(self->last_event_id);
    if (one_data_line && batch) {
        PyObject *batch, *blocks, *count = PyLong_FromSsize_t(n);
        blocks = size == PyBytes_GET_SIZE(buf) ? Py_NewRef(buf) : PyBytes_FromStringAndSize(start, size);
        if (count == NULL || blocks == NULL || (batch = new_tuple(batch_type, 3)) == NULL) {
            Py_XDECREF(count);
            Py_XDECREF(blocks);
            Py_DECREF(last_event_id);
            return NULL;
        }
        PyTuple_SET_ITEM(batch, 0, blocks);
        PyTuple_SET_ITEM(batch, 1, count);
        PyTuple_SET_ITEM(batch, 2, last_event_id); /* its reference */
        list = PyList_New(1);
        if (list == NULL) {
            Py_DECREF(batch);
            return NULL;
        }
        PyList_SET_ITEM(list, 0, batch);
        goto counted;
    }
    list = PyList_New(n);
    if (list == NULL) {
        Py_DECREF(last_event_id);
        return NULL;
    }
    for (p = start, i = 0; i < n; p = b.next, i++) {
        PyObject *event, *type, *data = NULL;
        block_at(p, end, &b);
        if (b.id != NULL) {
            PyObject *id = PyUnicode_DecodeUTF8(b.id, b.id_len, "strict");
            if (id == NULL)
                goto failed;
            Py_SETREF(last_event_id, id);
        }
        type = type_str(&b);
        data = type == NULL ? NULL : block_data(&b);
        if (data == NULL || (event = new_tuple(event_type, 4)) == NULL) {
            Py_XDECREF(type);
            Py_XDECREF(data);
            goto failed;
        }
        PyTuple_SET_ITEM(event, 0, type);
        PyTuple_SET_ITEM(event, 1, data);
        PyTuple_SET_ITEM(event, 2, Py_NewRef(last_event_id));
        PyTuple_SET_ITEM(event, 3, Py_NewRef(Py_None));
        PyList_SET_ITEM(list, i, event);
    }
    if (ids) {
        Py_SETREF(self->last_event_id, Py_NewRef(last_event_id));
        Py_SETREF(self->id_buffer, Py_NewRef(last_event_id));
    }
    Py_DECREF(last_event_id);
counted:
    if (crlf)
        self->pending_crlf += lines;
    else
        self->pending_lf += lines;
    return list;
failed:
    Py_DECREF(last_event_id);
    Py_DECREF(list);
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return NULL;
    PyErr_Clear(); /* not UTF-8: the Python parser replaces what is invalid */
    Py_RETURN_NONE;
}

static PyObject *simple_blocks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int crlf;
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &ParserCoreType) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "simple_blocks(parser: ParserCore, buf: bytes, crlf: bool)");
        return NULL;
    }
    if ((crlf = PyObject_IsTrue(args[2])) < 0)
        return NULL;
    return blocks_of((ParserCore *)args[0], args[1], PyBytes_GET_SIZE(args[1]), crlf);
}

static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    ParserCore *self = (ParserCore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->held = Py_NewRef(empty_bytes);
    self->c_ready = Py_NewRef(Py_False);
    self->started = Py_NewRef(Py_False);
    self->undecoded = Py_NewRef(Py_False);
    self->max_event_size = Py_NewRef(Py_None);
    self->message_batches = Py_NewRef(Py_False);
    self->line_endings = Py_NewRef(Py_None);
    self->last_event_id = Py_NewRef(Py_None);
    self->id_buffer = Py_NewRef(Py_None);
    return (PyObject *)self;
}

static int core_traverse(ParserCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->held);
    Py_VISIT(self->c_ready);
    Py_VISIT(self->started);
    Py_VISIT(self->undecoded);
    Py_VISIT(self->max_event_size);
    Py_VISIT(self->message_batches);
    Py_VISIT(self->line_endings);
    Py_VISIT(self->last_event_id);
    Py_VISIT(self->id_buffer);
    return 0;
}

static int core_clear(ParserCore *self)
{
    Py_CLEAR(self->held);
    Py_CLEAR(self->c_ready);
    Py_CLEAR(self->started);
    Py_CLEAR(self->undecoded);
    Py_CLEAR(self->max_event_size);
    Py_CLEAR(self->message_batches);
    Py_CLEAR(self->line_endings);
    Py_CLEAR(self->last_event_id);
    Py_CLEAR(self->id_buffer);
    return 0;
}

static void core_dealloc(ParserCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* 1 when size <= limit (an int; any size fits a limit beyond 64 bits), 0 when not, -1 on error. */
static int fits(Py_ssize_t size, PyObject *limit)
{
    int overflow;
    long long max = PyLong_AsLongLongAndOverflow(limit, &overflow);
    if (max == -1 && PyErr_Occurred())
        return -1;
    return overflow > 0 || (overflow == 0 && size <= max);
}

/* Every CR is followed by an LF and every LF preceded by a CR, and the bytes end with a blank line. */
static int pure_crlf(const char *p, Py_ssize_t size)
{
    const char *q = p, *end = p + size;
    Py_ssize_t crs = 0, lfs = 0;
    if (size < 4 || memcmp(p + size - 4, "\r\n\r\n", 4) != 0)
        return 0;
    while ((q = memchr(q, '\r', end - q)) != NULL) { /* (the last byte is an LF: q + 1 < end) */
        if (q[1] != '\n')
            return 0;
        crs++;
        q += 2;
    }
    for (q = p; (q = memchr(q, '\n', end - q)) != NULL; q++)
        lfs++;
    return lfs == crs; /* each CR is followed by an LF: any other LF would make more */
}

/* The same bytes with every CRLF as an LF (p holds no other CR: pure_crlf). */
static PyObject *crlf_to_lf(const char *p, Py_ssize_t size)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    const char *q = p, *end = p + size, *cr;
    char *o;
    if (out == NULL)
        return NULL;
    o = PyBytes_AS_STRING(out);
    while ((cr = memchr(q, '\r', end - q)) != NULL) {
        memcpy(o, q, cr - q);
        o += cr - q;
        q = cr + 1;
    }
    memcpy(o, q, end - q);
    o += end - q;
    if (_PyBytes_Resize(&out, o - PyBytes_AS_STRING(out)) < 0)
        return NULL;
    return out;
}

/* The last LF in p[0:n], or NULL. */
static const char *last_lf(const char *p, Py_ssize_t n)
{
#if defined(__GLIBC__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
    return memrchr(p, '\n', n);
#else /* (memrchr is not standard C: macOS has none) */
    while (n-- > 0)
        if (p[n] == '\n')
            return p + n;
    return NULL;
#endif
}

/* The index of the last occurrence of pair (n bytes, ending with an LF) in p[lo:size], or -1. */
static Py_ssize_t last_pair(const char *p, Py_ssize_t lo, Py_ssize_t size, const char *pair, Py_ssize_t n)
{
    Py_ssize_t hi = size, k;
    const char *lf;
    while (hi > lo + n - 1) {
        if ((lf = last_lf(p + lo + n - 1, hi - (lo + n - 1))) == NULL)
            return -1;
        k = lf - p - (n - 1);
        if (memcmp(p + k, pair, n) == 0)
            return k;
        hi = lf - p;
    }
    return -1;
}

/* rest (the start of a line after a block boundary) holds no LF, and no CR or only a last one that ends an empty
   line or a data line: see _holdable. */
static int holdable(const char *rest, Py_ssize_t n)
{
    const char *cr;
    if (n > HOLD_MAX || memchr(rest, '\n', n) != NULL)
        return 0;
    cr = memchr(rest, '\r', n);
    return cr == NULL || (cr == rest + n - 1 && (n == 1 || (n >= 5 && memcmp(rest, "data:", 5) == 0)));
}

/* items, with rest held for the next chunk (items NULL after an error). */
static PyObject *holding(ParserCore *self, PyObject *items, const char *rest, Py_ssize_t n)
{
    PyObject *held;
    if (items == Py_None || items == NULL)
        return items;
    if ((held = PyBytes_FromStringAndSize(rest, n)) == NULL) {
        Py_DECREF(items);
        return NULL;
    }
    Py_SETREF(self->held, held);
    return items;
}

/* The C fast paths of feed for data at a block boundary, held_len bytes of it held from the last chunk:
   Py_None when none applies. */
static PyObject *fast_paths(ParserCore *self, PyObject *data, Py_ssize_t held_len)
{
    const char *p = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data), k;
    PyObject *items, *lf;
    items = blocks_of(self, data, size, 0);
    if (items != Py_None)
        return items;
    Py_DECREF(items);
    if (pure_crlf(p, size)) { /* the same blocks with CRLF endings (sse-starlette's, Gemini's) */
        if ((lf = crlf_to_lf(p, size)) == NULL)
            return NULL;
        items = blocks_of(self, lf, PyBytes_GET_SIZE(lf), 1);
        Py_DECREF(lf);
        if (items != Py_None)
            return items;
        Py_DECREF(items);
    }
    /* Whole blocks, then the start of a line: see _feed_py. */
    k = last_pair(p, held_len, size, "\n\n", 2);
    if (k >= 0 && holdable(p + k + 2, size - k - 2) && memchr(p + k + 2, '\r', size - k - 2) == NULL) {
        items = blocks_of(self, data, k + 2, 0);
        if (items != Py_None)
            return holding(self, items, p + k + 2, size - k - 2);
        Py_DECREF(items);
    }
    /* The same with CRLF endings. */
    k = last_pair(p, held_len, size, "\r\n\r\n", 4);
    if (k < 0 || !holdable(p + k + 4, size - k - 4) || !pure_crlf(p, k + 4))
        Py_RETURN_NONE;
    if ((lf = crlf_to_lf(p, k + 4)) == NULL)
        return NULL;
    items = blocks_of(self, lf, PyBytes_GET_SIZE(lf), 1);
    Py_DECREF(lf);
    return holding(self, items, p + k + 4, size - k - 4);
}

static PyObject *core_feed(ParserCore *self, PyObject *arg)
{
    PyObject *data, *items;
    Py_ssize_t size, held_len;
    int ok;
    if (PyBytes_CheckExact(arg))
        data = Py_NewRef(arg);
    else if ((data = PyBytes_FromObject(arg)) == NULL)
        return NULL;
    size = PyBytes_GET_SIZE(data);
    self->bytes_in += size;
    if (!PyBytes_Check(self->held)) {
        PyErr_SetString(PyExc_TypeError, "SSEParser._held must be bytes");
        goto error;
    }
    held_len = PyBytes_GET_SIZE(self->held);
    if (held_len) {
        PyObject *joined = Py_NewRef(self->held);
        PyBytes_Concat(&joined, data);
        Py_SETREF(data, joined);
        if (data == NULL)
            return NULL;
        Py_SETREF(self->held, Py_NewRef(empty_bytes));
        size = PyBytes_GET_SIZE(data);
    }
    else if (self->started != Py_True && self->undecoded != Py_True && size
             && (unsigned char)PyBytes_AS_STRING(data)[0] != 0xEF) {
        /* the stream's first bytes, and no BOM: see _feed_py */
        Py_SETREF(self->started, Py_NewRef(Py_True));
        if ((items = PyObject_CallMethodNoArgs((PyObject *)self, settle_name)) == NULL)
            goto error;
        Py_DECREF(items);
    }
    if (self->c_ready == Py_True) {
        if ((ok = fits(size, self->max_event_size)) < 0)
            goto error;
        if (ok) {
            items = fast_paths(self, data, held_len);
            if (items != Py_None) {
                Py_DECREF(data);
                return items;
            }
            Py_DECREF(items);
        }
    }
    items = PyObject_CallMethodOneArg((PyObject *)self, feed_text_name, data);
    Py_DECREF(data);
    return items;
error:
    Py_DECREF(data);
    return NULL;
}

static PyObject *core_get_line_endings(ParserCore *self, void *closure)
{
    if (flush_lines(self) < 0)
        return NULL;
    return Py_NewRef(self->line_endings);
}

static int core_set_line_endings(ParserCore *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "line_endings cannot be deleted");
        return -1;
    }
    Py_SETREF(self->line_endings, Py_NewRef(value));
    self->pending_lf = self->pending_crlf = 0;
    return 0;
}

static PyGetSetDef core_getset[] = {
    {"line_endings", (getter)core_get_line_endings, (setter)core_set_line_endings,
     "Lines read by their ending: {'lf': n, 'crlf': n, 'cr': n}.", NULL},
    {NULL},
};

static PyMemberDef core_members[] = {
    {"_held", Py_T_OBJECT_EX, offsetof(ParserCore, held), 0, NULL},
    {"_c_ready", Py_T_OBJECT_EX, offsetof(ParserCore, c_ready), 0, NULL},
    {"_started", Py_T_OBJECT_EX, offsetof(ParserCore, started), 0, NULL},
    {"_undecoded", Py_T_OBJECT_EX, offsetof(ParserCore, undecoded), 0, NULL},
    {"max_event_size", Py_T_OBJECT_EX, offsetof(ParserCore, max_event_size), 0, NULL},
    {"message_batches", Py_T_OBJECT_EX, offsetof(ParserCore, message_batches), 0, NULL},
    {"last_event_id", Py_T_OBJECT_EX, offsetof(ParserCore, last_event_id), 0, NULL},
    {"_id_buffer", Py_T_OBJECT_EX, offsetof(ParserCore, id_buffer), 0, NULL},
    {"bytes_in", Py_T_PYSSIZET, offsetof(ParserCore, bytes_in), 0, NULL},
    {NULL},
};

static PyMethodDef core_methods[] = {
    {"feed", (PyCFunction)core_feed, METH_O,
     "feed(data: bytes) -> list: the items the bytes complete (see SSEParser)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ParserCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sse_capture_addon._speedups.ParserCore",
    .tp_doc = "SSEParser's base: the state feed() reads, and feed() (see sse.py).",
    .tp_basicsize = sizeof(ParserCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = core_new,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_members = core_members,
    .tp_getset = core_getset,
    .tp_methods = core_methods,
};

static PyMethodDef methods[] = {
    {"exact_json", exact_json, METH_O,
     "exact_json(buf) -> bool: buf is one JSON object or array that "
     "orjson re-serialises to exactly the same bytes; False when that is not certain."},
    {"exact_lines", (PyCFunction)(void (*)(void))exact_lines, METH_FASTCALL,
     "exact_lines(blocks, count, head) -> bytes | None: head + DATA + b'}\\n' for each of the count "
     "'data: DATA' blocks of a MessageBatch's blocks, when every DATA is JSON that exact_json accepts; None "
     "otherwise."},
    {"token_chunk", (PyCFunction)(void (*)(void))token_chunk, METH_FASTCALL,
     "token_chunk(blocks, count, t, n, crlf=False) -> bytes | None: blocks_chunk_line(t, n, count, crlf=crlf) and "
     "then the event lines message_lines writes for a MessageBatch of blocks with no last event ID, at time t; None "
     "when exact_lines would give None."},
    {"typed_chunk", (PyCFunction)(void (*)(void))typed_chunk, METH_FASTCALL,
     "typed_chunk(blocks, count, t, n) -> bytes | None: blocks_chunk_line(t, n, count) and then the event lines "
     "event_line_json writes for a chunk of count 'event: TYPE' + 'data: DATA' blocks with no last event ID, at "
     "time t; None when a TYPE is not plain printable ASCII or is 'message', or a DATA is not exact JSON."},
    {"simple_blocks", (PyCFunction)(void (*)(void))simple_blocks, METH_FASTCALL,
     "simple_blocks(parser, buf, crlf) -> list | None: the Events (or one MessageBatch) of a chunk of whole "
     "blocks of data lines, counting its lines in parser.line_endings; None when the chunk is anything else."},
    {"set_types", set_types, METH_VARARGS, "set_types(Event, MessageBatch): the classes simple_blocks makes."},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module)
{
    init_string_stop();
    if (message_str == NULL && (message_str = PyUnicode_InternFromString("message")) == NULL)
        return -1;
    if ((empty_bytes == NULL && (empty_bytes = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        || (lf_key == NULL && (lf_key = PyUnicode_InternFromString("lf")) == NULL)
        || (crlf_key == NULL && (crlf_key = PyUnicode_InternFromString("crlf")) == NULL)
        || (settle_name == NULL && (settle_name = PyUnicode_InternFromString("_settle")) == NULL)
        || (feed_text_name == NULL && (feed_text_name = PyUnicode_InternFromString("_feed_text")) == NULL))
        return -1;
    if (PyType_Ready(&ParserCoreType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "ParserCore", (PyObject *)&ParserCoreType);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "C accelerators for sse_capture_addon (optional).", 0, methods,
    slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModuleDef_Init(&module);
}
