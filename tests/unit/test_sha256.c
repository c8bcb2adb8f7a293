// test_sha256.c: SHA-256 against the FIPS 180-4 / NIST example vectors, and streaming in
// arbitrary pieces against the one-shot digest.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/sha256.h"
#include "testlib.h"

static void check_hex(const void *data, size_t n, const char *want) {
    uint8_t d[SHA256_BYTES];
    char hex[2 * SHA256_BYTES + 1];
    sha256(data, n, d);
    sha256_hex(d, hex);
    assert_string_equal(hex, want);
}

static void test_nist_short_vectors(void **state) {
    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_hex(m448, strlen(m448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqr"
                       "smnopqrstnopqrstu";
    check_hex(m896, strlen(m896), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_one_million_a(void **state) {
    char *m = malloc(1000000);
    assert_non_null(m);
    memset(m, 'a', 1000000);
    check_hex(m, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(m);
}

// Every message length around the padding boundaries (55, 56, 63, 64 bytes ...), fed in random pieces.
static void test_streaming_in_random_pieces_equals_one_shot(void **state) {
    uint8_t msg[300];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)test_rand_u64();
    for (size_t n = 0; n <= sizeof msg; n++) {
        uint8_t want[SHA256_BYTES], got[SHA256_BYTES];
        sha256(msg, n, want);
        sha256_ctx c;
        sha256_init(&c);
        for (size_t done = 0; done < n;) {
            size_t piece = (size_t)(test_rand_u64() % 80);
            if (piece > n - done) piece = n - done;
            sha256_update(&c, msg + done, piece);
            done += piece;
        }
        sha256_final(&c, got);
        assert_memory_equal(got, want, SHA256_BYTES);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_short_vectors),
        cmocka_unit_test(test_one_million_a),
        cmocka_unit_test(test_streaming_in_random_pieces_equals_one_shot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
