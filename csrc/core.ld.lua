--- `dws.core`, the C core (csrc/core.c, key.c, encoding.c, sigheader.c, redact.c, json.c): RSA keys,
-- signatures, base64 and percent coding, JSON, redaction, clocks. Most callers need only `dws`; this
-- is for scripts and tools.
-- Every function raises only on programming errors (wrong argument types) and returns `nil, err`
-- for everything a caller must handle; messages never contain key material or input bytes.
--
-- This file holds doc comments only (LDoc reads it for config.ld): the functions are registered in
-- C under other names. docs-check compares it with what `require "dws.core"` really exports.
-- @module dws.core

--- Parse a private key: PEM (PKCS#8 or PKCS#1) or bare base64 DER. RSA only, 2048 to 16384 bits,
-- pair-wise checked. Or an RFC 7512 `pkcs11:` URI (object= or id=; module-path=, pin-source=file:)
-- naming a key held by a PKCS#11 token, used through OpenSSL's "pkcs11" engine: logged in and
-- loaded now, again in a forked process before its first signature; `tostring` shows "pkcs11",
-- never the PIN (docs/keys.md).
-- syntax: `key, err = core.private_key(text, opts?)`
-- @function private_key
-- @tparam string text
-- @tparam[opt] table opts `pin`: the token's PIN, for a `pkcs11:` URI without pin-source
-- @treturn key the key
-- @treturn[2] nil
-- @treturn[2] string err

--- Parse a public key: PEM or bare base64 SubjectPublicKeyInfo (also PKCS#1 "RSA PUBLIC KEY").
-- syntax: `key, err = core.public_key(text)`
-- @function public_key
-- @tparam string text
-- @treturn key the key
-- @treturn[2] nil
-- @treturn[2] string err

--- A new RSA key pair (what `dws keygen` writes).
-- syntax: `private_pem, public_b64 = core.generate_key(bits?)`
-- @function generate_key
-- @tparam[opt=2048] int bits
-- @treturn string the private key, PKCS#8 PEM
-- @treturn string the public key, bare base64 SubjectPublicKeyInfo (what DWS's portal takes)

--- Sign `"<method> <path>\n<client_id>.<time>.<body>"` (built in C memory, cleansed after).
-- syntax: `b64, err = core.sign(key, method, path, client_id, time, body)`
-- @function sign
-- @tparam key key a private key
-- @tparam string method
-- @tparam string path
-- @tparam string client_id
-- @tparam string time
-- @tparam string|buffer body
-- @treturn string the signature, standard base64
-- @treturn[2] nil
-- @treturn[2] string err

--- Verify a raw signature over the same content as `sign`.
-- syntax: `ok, why = core.verify(key, method, path, client_id, time, body, raw_sig)`
-- @function verify
-- @tparam key key a public key
-- @tparam string method
-- @tparam string path
-- @tparam string client_id
-- @tparam string time
-- @tparam string body
-- @tparam string raw_sig the signature bytes (not base64)
-- @treturn bool true, or false and the reason

--- The Signature header value: `algorithm=RSA256,keyVersion=<v>,signature=<url-encoded b64>`.
-- syntax: `header = core.signature_header(b64sig, key_version)`
-- @function signature_header
-- @tparam string b64sig
-- @tparam string key_version
-- @treturn string

--- Parse a Signature header value (percent-decoded, strict base64).
-- syntax: `t, err = core.parse_signature_header(s)`
-- @function parse_signature_header
-- @tparam string s
-- @treturn table `{ algorithm =, keyVersion =, signature = <raw bytes> }`
-- @treturn[2] nil
-- @treturn[2] string err

--- Standard base64.
-- syntax: `s = core.base64_encode(bytes)`
-- @function base64_encode
-- @tparam string bytes
-- @treturn string

--- Strict base64 decoding (alphabet, padding, length).
-- syntax: `bytes, err = core.base64_decode(s)`
-- @function base64_decode
-- @tparam string s
-- @treturn string
-- @treturn[2] nil
-- @treturn[2] string err

--- Percent-encode all but `A-Z a-z 0-9 - _ . ~` (upper-case hex).
-- syntax: `s = core.url_encode(s)`
-- @function url_encode
-- @tparam string s
-- @treturn string

--- Percent-decode (`+` stays `+`; a bad `%XX` is an error).
-- syntax: `s, err = core.url_decode(s)`
-- @function url_decode
-- @tparam string s
-- @treturn string
-- @treturn[2] nil
-- @treturn[2] string err

--- Encode JSON: object keys sorted (deterministic bytes), `/` not escaped, UTF-8 checked; arrays
-- are tables marked with `array_mt` or non-empty sequences. With `stringify`, numbers and booleans
-- become JSON strings (as the API pages require).
-- syntax: `s, err = core.json_encode(value, stringify?)`
-- @function json_encode
-- @param value
-- @tparam[opt] bool stringify
-- @treturn string
-- @treturn[2] nil
-- @treturn[2] string err naming the path (e.g. "env.terminalType"): cycles, depth over 64, NaN,
-- invalid UTF-8, functions, non-string keys

--- The same bytes as `json_encode`, in C memory (a `buffer`), never a Lua string.
-- syntax: `b, err = core.json_encode_buffer(value, stringify?)`
-- @function json_encode_buffer
-- @param value
-- @tparam[opt] bool stringify
-- @treturn buffer
-- @treturn[2] nil
-- @treturn[2] string err

--- Decode JSON (`null` becomes `null`, arrays get `array_mt`, integers stay integers on 5.3+;
-- depth limit 64; a string holding `\u0000` is refused).
-- syntax: `value, err = core.json_decode(s)`
-- @function json_decode
-- @tparam string s
-- @return the value
-- @treturn[2] nil
-- @treturn[2] string err

--- The metatable that marks a table as a JSON array (`dws.array` sets it).
-- @table array_mt

--- The JSON `null` sentinel (a lightuserdata; `dws.null`).
-- @field null

--- A random RFC 4122 version 4 UUID (from `RAND_bytes`).
-- syntax: `id = core.uuid4()`
-- @function uuid4
-- @treturn string

--- `n` random bytes (`RAND_bytes`).
-- syntax: `bytes = core.random_bytes(n)`
-- @function random_bytes
-- @tparam int n
-- @treturn string

--- Milliseconds since the epoch (`CLOCK_REALTIME`), an integer.
-- syntax: `ms = core.time_ms()`
-- @function time_ms
-- @treturn int

--- Seconds from a monotonic clock (`CLOCK_MONOTONIC`), a float.
-- syntax: `s = core.monotonic()`
-- @function monotonic
-- @treturn number

--- Sleep (nanosleep, resumed after a signal).
-- syntax: `core.sleep(seconds)`
-- @function sleep
-- @tparam number seconds

--- Library versions.
-- syntax: `t = core.versions()`
-- @function versions
-- @treturn table `{ openssl = "OpenSSL 3.0.x", cjson = "1.7.15", lua = _VERSION }`

--- Free text with every card-number-like digit run masked (the rule of `dws.redact.text`): a run
-- of 12 to 19 digits that could be a card (Luhn-valid; a 13-digit run starting with 1 is a
-- millisecond timestamp), also written in groups of 3 or more digits split by up to three
-- separators (space, tab, newline, `-`, `.`, `/`, `_`, `,`); separators kept. Works on a copy it
-- cleanses; returns `s` itself when nothing is masked.
-- syntax: `masked = core.mask_card_digits(s)`
-- @function mask_card_digits
-- @tparam string s
-- @treturn string

--- The first six and last four characters kept when `#s >= 13`, every other character a star;
-- all stars when shorter (`dws.redact.card_number`).
-- syntax: `masked = core.mask_card(s)`
-- @function mask_card
-- @tparam string s
-- @treturn string

--- The Luhn check over a string of ASCII digits (false for anything else, or an empty string).
-- The one Luhn check of the SDK: `dws.card` and the redaction use it.
-- syntax: `ok = core.luhn(digits)`
-- @function luhn
-- @tparam string digits
-- @treturn bool

--- Create a new file: refuses a name already taken, a symbolic link (even a dangling one)
-- included, in the same step that creates the file (open with O_CREAT|O_EXCL|O_NOFOLLOW), sets
-- `mode` whatever the umask, and removes the file again when it could not be written whole. Key
-- files are written through it.
-- syntax: `ok, err = core.create_file(path, data, mode)`
-- @function create_file
-- @tparam string path
-- @tparam string data
-- @tparam int mode e.g. `tonumber("0600", 8)`
-- @treturn bool true
-- @treturn[2] nil
-- @treturn[2] string err: `"exists"` when the name is taken, else the system's words
-- @raise when `mode` is not 0 to 0777

--- Whether text could name a security code: three digits in a row and one of `words` in any
-- letter case (`dws.redact.text` passes the words of its secret fields, and runs its
-- security-code patterns only then).
-- syntax: `maybe = core.code_hint(s, words)`
-- @function code_hint
-- @tparam string s
-- @tparam {string,...} words lower-case words
-- @treturn bool

--- Control characters escaped (`\n`, `\r`, `\t`, other C0 bytes and DEL as `\xHH`) and the
-- Unicode line breaks NEL, U+2028, U+2029 as `\u0085`, `\u2028`, `\u2029` (`dws.redact.escape`);
-- `s` itself when there is nothing to escape.
-- syntax: `one_line = core.escape_text(s)`
-- @function escape_text
-- @tparam string s
-- @treturn string

--- A parsed RSA key (userdata): it only signs or verifies; `tostring` shows its kind and size,
-- never its material. `__gc` and `__close` release it as `close` does.
-- @type key

--- Sign `content` (private keys only).
-- syntax: `raw, err = key:sign(content)`
-- @function key:sign
-- @tparam string content
-- @treturn string raw signature bytes
-- @treturn[2] nil
-- @treturn[2] string err
-- @raise on a public or closed key

--- Verify raw signature bytes over `content` (public keys only).
-- syntax: `ok, why = key:verify(content, raw)`
-- @function key:verify
-- @tparam string content
-- @tparam string raw
-- @treturn bool true, or false and the reason
-- @raise on a private or closed key

--- The modulus size in bits.
-- syntax: `n = key:bits()`
-- @function key:bits
-- @treturn int

--- `"private"` or `"public"`.
-- syntax: `kind = key:kind()`
-- @function key:kind
-- @treturn string

--- The DER SubjectPublicKeyInfo of the public half (private keys too): compares two keys.
-- syntax: `der = key:public_der()`
-- @function key:public_der
-- @treturn string

--- Release the key; idempotent.
-- syntax: `key:close()`
-- @function key:close

--- Bytes in C memory (from `json_encode_buffer`); `tostring` gives `dws.buffer(<n> bytes)`.
-- `__gc` and `__close` wipe it too.
-- @type buffer

--- The length in bytes.
-- syntax: `n = b:len()`
-- @function buffer:len
-- @treturn int

--- Overwrite the bytes (`OPENSSL_cleanse`); idempotent.
-- syntax: `b:wipe()`
-- @function buffer:wipe
