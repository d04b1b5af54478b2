/*
 * dws.buffer: bytes that must never become a Lua string (an encoded request body with card data).
 * Made by dws.core (json_encode_buffer), read in place by dws.curl, wiped by dws.core (wipe, __gc).
 * Shared by both modules through the registry metatable named DWS_BUFFER_MT; this header is the
 * layout contract between them.
 */
#ifndef DWS_BUFFER_H
#define DWS_BUFFER_H

#include <stddef.h>

#define DWS_BUFFER_MT "dws.buffer"

typedef struct dws_buffer {
    size_t len;                 /* 0 once wiped */
    unsigned char data[];       /* the bytes live inside the userdata itself */
} dws_buffer;

#endif
