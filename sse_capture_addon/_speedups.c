/* Optional accelerator for the recording format (see recording.py, which works the same without it).

   exact_json(buf, sep=b"") -> bool

   True when buf is one JSON object or array (or, with a non-empty sep, several joined by sep) that
   orjson.dumps(orjson.loads(value)) gives back byte for byte, so that the recorder may store the data as it
   came instead of parsing it into Python objects and serialising it again: that round trip is most of
   what recording a token stream costs.

   False means "not proven": the caller then decides with orjson itself. So everything this scanner is not
   sure orjson reproduces exactly is refused: any whitespace, exponents, integers beyond 64 bits, "-0",
   escapes other than the ones orjson writes, duplicate keys, objects of more than MAX_KEYS keys, nesting
   deeper than MAX_DEPTH, invalid UTF-8. A scan is one pass over the bytes, with no allocation. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

/* A string at s->p (an opening quote) written the way orjson writes strings: raw UTF-8, and escapes only
   for '"', '\', and control characters (short forms \b \t \n \f \r, else \u00xx in lowercase hex). */
static int string(Scan *s)
{
    const unsigned char *p = s->p + 1, *end = s->end;
    while (p < end) {
        unsigned char c = *p;
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
            continue;
        }
        p++;
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

static int exact_values(const unsigned char *buf, Py_ssize_t size, const unsigned char *sep, Py_ssize_t seplen)
{
    Scan s = {buf, buf + size, 0};
    for (;;) {
        if (s.p >= s.end || (*s.p != '{' && *s.p != '['))
            return 0;
        if (!container(&s))
            return 0;
        if (s.p == s.end)
            return 1;
        if (seplen == 0 || s.end - s.p < seplen || memcmp(s.p, sep, seplen) != 0)
            return 0;
        s.p += seplen;
    }
}

static PyObject *exact_json(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *sep = "";
    Py_ssize_t seplen = 0;
    int ok;
    if (nargs < 1 || nargs > 2 || !PyBytes_Check(args[0]) || (nargs == 2 && !PyBytes_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "exact_json(buf: bytes, sep: bytes = b'')");
        return NULL;
    }
    if (nargs == 2) {
        sep = PyBytes_AS_STRING(args[1]);
        seplen = PyBytes_GET_SIZE(args[1]);
    }
    ok = exact_values((const unsigned char *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]),
                      (const unsigned char *)sep, seplen);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"exact_json", (PyCFunction)(void (*)(void))exact_json, METH_FASTCALL,
     "exact_json(buf, sep=b'') -> bool: buf is one JSON object or array (or several joined by sep) that "
     "orjson re-serialises to exactly the same bytes; False when that is not certain."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "C accelerator for sse_capture_addon.recording (optional).", 0, methods,
    slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModuleDef_Init(&module);
}
