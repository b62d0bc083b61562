/* Escaping untrusted text for logs and terminals (text.c). */
#include "../t.h"
#include "text.h"

int main(void)
{
    char b[256];
    CHECK_STR(bs_text_escape("plain id-42", b, sizeof b), "plain id-42");
    CHECK_STR(bs_text_escape(NULL, b, sizeof b), "");
    /* a newline cannot start a forged log line; a terminal escape cannot run */
    CHECK_STR(bs_text_escape("x\ncommand done matched=999", b, sizeof b),
              "x\\x0acommand done matched=999");
    CHECK_STR(bs_text_escape("\x1b[2J\r\t\x7f", b, sizeof b), "\\x1b[2J\\x0d\\x09\\x7f");
    CHECK_STR(bs_text_escape("back\\slash", b, sizeof b), "back\\\\slash");
    /* well-formed UTF-8 stays; anything else is escaped byte by byte */
    CHECK_STR(bs_text_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", b, sizeof b),
              "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    CHECK_STR(bs_text_escape("bad \xff\xfe end", b, sizeof b), "bad \\xff\\xfe end");
    CHECK_STR(bs_text_escape("overlong \xc0\xaf", b, sizeof b), "overlong \\xc0\\xaf");
    CHECK_STR(bs_text_escape("surrogate \xed\xa0\x80", b, sizeof b), "surrogate \\xed\\xa0\\x80");
    CHECK_STR(bs_text_escape("cut \xe2\x82", b, sizeof b), "cut \\xe2\\x82");
    /* a small buffer cuts at a whole escape, NUL-terminated */
    char s[6];
    CHECK_STR(bs_text_escape("ab\ncd", s, sizeof s), "ab");
    CHECK_STR(bs_text_escape("abcdefgh", s, sizeof s), "abcde");
    /* the trace id of a W3C traceparent, or "-" */
    char t[33];
    CHECK_STR(bs_trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t),
              "4bf92f3577b34da6a3ce929d0e0e4736");
    CHECK_STR(bs_trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", t),
              "4bf92f3577b34da6a3ce929d0e0e4736"); /* a later version may append fields */
    CHECK_STR(bs_trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", t), "-");
    CHECK_STR(bs_trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01", t), "-");
    CHECK_STR(bs_trace_id("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t), "-");
    CHECK_STR(bs_trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", t), "-");
    CHECK_STR(bs_trace_id("garbage", t), "-");
    CHECK_STR(bs_trace_id(NULL, t), "-");
    return t_done();
}
