/* A stand-in for Windows' bcryptprimitives.dll, for running netdeploy-agent.exe under Wine 8
 * (Debian 12), which lacks that DLL. Windows 10 and later, Windows PE included, ship it: Rust's
 * standard library takes its random numbers from its ProcessPrng. Here ProcessPrng asks
 * advapi32's RtlGenRandom (SystemFunction036), which Wine has. Used only by the tests that run
 * the Windows agent under Wine (tests/integration/winpe_wine.rs); never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
