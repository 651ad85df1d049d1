/* A stand-in for diskpart.exe, dism.exe and bcdboot.exe under Wine
 * (tests/integration/winpe_wine.rs): appends its name and arguments to calls.txt beside
 * itself, and the script of "/s FILE" (diskpart) after them, then exits 0. */
#include <stdio.h>
#include <string.h>
#include <windows.h>

int main(int argc, char **argv) {
    char self[MAX_PATH], log[MAX_PATH + 16];
    DWORD n = GetModuleFileNameA(NULL, self, MAX_PATH);
    if (n == 0 || n >= MAX_PATH) return 2;
    char *slash = strrchr(self, '\\');
    if (!slash) return 2;
    *slash = 0;
    char *name = slash + 1;
    char *dot = strrchr(name, '.');
    if (dot) *dot = 0;
    snprintf(log, sizeof log, "%s\\calls.txt", self);
    FILE *out = fopen(log, "ab");
    if (!out) return 3;
    fputs(name, out);
    for (int i = 1; i < argc; i++) {
        fputc(' ', out);
        fputs(argv[i], out);
    }
    fputc('\n', out);
    if (strcmp(name, "diskpart") == 0 && argc == 3 && _stricmp(argv[1], "/s") == 0) {
        FILE *script = fopen(argv[2], "rb");
        if (!script) return 4;
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, script)) > 0) fwrite(buf, 1, got, out);
        fclose(script);
        fputs("----\n", out);
    }
    fclose(out);
    return 0;
}
