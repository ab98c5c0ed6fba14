/*
 * A stand-in for Windows' bcryptprimitives.dll, for running this crate's Windows build
 * (x86_64-pc-windows-gnu) under Wine 8.0.
 *
 * Why: since Rust 1.78 the standard library takes its random bytes (HashMap's RandomState,
 * among others) from ProcessPrng in bcryptprimitives.dll, and so do getrandom 0.3 and later.
 * Wine 8.0 ships no bcryptprimitives.dll at all (no builtin of that name), so every Rust
 * program fails to start: the loader cannot resolve the import.
 *
 * What: the one export our programs import from it: `x86_64-w64-mingw32-objdump -p x.exe`
 * lists only ProcessPrng for programs on std, tokio/mio, socket2 and windows-sys; getrandom 0.3
 * and 0.4 bind the same function, while getrandom 0.2 (under ring 0.17) calls BCryptGenRandom
 * in bcrypt.dll, which Wine has. ProcessPrng(buf, len) fills buf with
 * len random bytes and always returns TRUE; here it calls RtlGenRandom (advapi32's
 * SystemFunction036), which Wine's advapi32 exports. RtlGenRandom
 * takes a 32-bit length, hence the loop.
 *
 * Built by setup.sh beside it, without the C runtime (no DllMain, no msvcrt):
 *   x86_64-w64-mingw32-gcc -shared -O2 -s -nostdlib -o bcryptprimitives.dll \
 *       bcryptprimitives.c -ladvapi32
 * and copied into the Wine prefix's system32.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE; /* cannot happen on Windows; tells a caller that checks */
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

/* The entry point -nostdlib leaves to us: nothing to set up or tear down. */
BOOL WINAPI DllMainCRTStartup(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance; (void)reason; (void)reserved;
    return TRUE;
}
