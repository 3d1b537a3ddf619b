/*
 * ticketkeys.h — the session ticket key file (tls-ticket-key-file): its
 * text turned into the keys libtls takes. Pure: bytes in, keys out, no
 * files and no sockets, so that every host reading the same file makes
 * the same keys, and a unit test or fuzzer can say which.
 *
 * The file (popsd.conf(5)): one key per line, the base64 of 80 random
 * bytes (HAProxy's tls-ticket-keys format; 48 bytes accepted too), blank
 * lines and lines starting with '#' ignored, LF or CRLF. The first key
 * encrypts new tickets, the others only decrypt (nginx's order: rotate by
 * prepending a new key). At most TICKET_KEYS keys.
 *
 * libtls takes a key as a 32-bit name and 48 bytes (a 32-byte AES-256 key
 * then a 16-byte HMAC-SHA256 key, tls_config_add_ticket_key(3)), which a
 * HAProxy key's 16-byte name, and AES and HMAC keys of 16 or 32 bytes,
 * do not fit. So each key is derived from the whole decoded line:
 * HKDF-SHA512 (RFC 5869) with an empty salt, info TICKETKEYS_HKDF_INFO
 * and 52 bytes of output: bytes 0-3 are the name (big-endian), 4-35 the
 * AES key, 36-51 the HMAC key. A derived name of 0 (libtls' empty slot)
 * or one another line of the file already has is refused: replace that
 * key (a chance of about 2^-32 per pair).
 */
#ifndef POPSD_TICKETKEYS_H
#define POPSD_TICKETKEYS_H

#include <stddef.h>
#include <stdint.h>

/* libtls keeps this many ticket keys (TLS_NUM_TICKETS) of this size
 * (TLS_TICKET_KEY_SIZE: AES-256 key and HMAC-SHA256 key). */
#define TICKET_KEYS		4
#define TICKET_KEY_SIZE		48

/* Sizes of a key in the file, decoded: HAProxy's AES-256 and AES-128
 * layouts (16-byte name, then its AES and HMAC keys). */
#define TICKETKEYS_RAW_LONG	80
#define TICKETKEYS_RAW_SHORT	48
#define TICKETKEYS_LINE_MAX	256	/* bytes, without the line ending */

#define TICKETKEYS_HKDF_INFO	"popsd tls-ticket-key-file v1"

struct ticket_key_set {
	/* In file order: [0] encrypts, the others only decrypt. */
	uint8_t		key[TICKET_KEYS][TICKET_KEY_SIZE];
	uint32_t	rev[TICKET_KEYS];	/* libtls key names */
	int		n;
};

/*
 * ticketkeys_parse: the keys of a key file's text (len bytes, NULs and
 * all) into *out, which is wiped first. Returns 0 with out->n >= 1, or
 * -1 with *line the file's line number (0 for the whole file) and what is
 * wrong in err; never any key material in err. Decoded bytes are wiped
 * before return; on failure *out is wiped too.
 */
int	ticketkeys_parse(const uint8_t *text, size_t len,
	    struct ticket_key_set *out, int *line, char *err, size_t errsz);

/*
 * ticketkeys_derive: libtls' name and key for one decoded key of rawlen
 * bytes (the derivation above). Returns 0, or -1 if libcrypto failed.
 */
int	ticketkeys_derive(const uint8_t *raw, size_t rawlen, uint32_t *rev,
	    uint8_t key[TICKET_KEY_SIZE]);

#endif
