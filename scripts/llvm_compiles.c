/*
 * Counts the LLVM modules a Mesa software driver (lavapipe/llvmpipe) creates — one per shader
 * compile — so a bench can tell which kernels are compiled again at every launch.
 *
 *   gcc -shared -fPIC -O2 -o /tmp/libllvm_compiles.so scripts/llvm_compiles.c -ldl
 *   LD_PRELOAD=/tmp/libllvm_compiles.so deno run -A bench/params_binding.ts \
 *     --compiles /tmp/libllvm_compiles.so
 *
 * The driver loads libLLVM privately (dlopen, RTLD_LOCAL), so RTLD_NEXT cannot see it: the real
 * function is looked up in the already loaded library.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

static long modules = 0;

typedef void *(*create_fn)(const char *, void *);

void *LLVMModuleCreateWithNameInContext(const char *name, void *context) {
  static create_fn real = 0;
  if (!real) {
    void *llvm = dlopen("libLLVM-15.so.1", RTLD_NOLOAD | RTLD_LAZY);
    real = (create_fn)dlsym(llvm ? llvm : RTLD_NEXT, "LLVMModuleCreateWithNameInContext");
  }
  modules++;
  return real(name, context);
}

/** Modules created so far (read from Deno through Deno.dlopen). */
long llvm_modules_created(void) { return modules; }
