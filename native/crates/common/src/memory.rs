//! Handing freed memory back to the system.

/// Returns the free pages of every malloc arena to the system. glibc keeps what a freed model
/// or tokenizer leaves between live allocations (and whole arenas of the threads that loaded
/// it) counted in the process's resident memory until something asks for it; an engine that
/// closes a model and loads another would otherwise hold both. Elsewhere it does nothing.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and is safe to call at any time from
        // any thread; its result only says whether anything was released.
        unsafe {
            malloc_trim(0);
        }
    }
}
