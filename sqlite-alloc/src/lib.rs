//! Points the bundled `SQLite`'s memory allocator at mimalloc, the binary's allocator.
//!
//! `SQLite` calls `malloc` from libc on its own, bypassing Rust's global allocator. On
//! glibc the `SQLite` worker thread of `acctd simulate` spent 18.5 % of all samples in
//! libc, mostly `_int_malloc`, `malloc_consolidate` and `unlink_chunk`; 6.3 % with
//! mimalloc (BENCHMARKS.md). This is the workspace's only `unsafe` code, kept in its own
//! crate so that `acctd` itself keeps `unsafe_code = "forbid"`.
#![warn(clippy::pedantic)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use libmimalloc_sys as mi;
use libsqlite3_sys as ffi;

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: mi_malloc accepts any size; SQLite never asks for a negative one.
    unsafe { mi::mi_malloc(usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: `p` came from x_malloc or x_realloc (or is null).
    unsafe { mi::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: `p` came from x_malloc or x_realloc (or is null).
    unsafe { mi::mi_realloc(p, usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: `p` came from x_malloc or x_realloc.
    let size = unsafe { mi::mi_usable_size(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // SAFETY: a pure function of its argument.
    let size = unsafe { mi::mi_good_size(usize::try_from(n).unwrap_or(0)) };
    c_int::try_from(size).unwrap_or(n)
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Installs mimalloc as `SQLite`'s allocator. Effective only before `SQLite` is first
/// initialized (before the first connection opens); a later first call changes nothing.
/// Returns whether `SQLite` took it.
pub fn install() -> bool {
    static TAKEN: OnceLock<bool> = OnceLock::new();
    *TAKEN.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to an sqlite3_mem_methods, which
        // SQLite copies. OnceLock runs this once; SQLite refuses it (SQLITE_MISUSE) once
        // initialized, so a late call changes nothing.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) };
        rc == ffi::SQLITE_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_allocates_through_mimalloc_once_installed() {
        assert!(install(), "SQLite refused the allocator");
        assert!(install(), "a second call reports the first one's outcome");
        let mut current = ffi::sqlite3_mem_methods {
            xMalloc: None,
            xFree: None,
            xRealloc: None,
            xSize: None,
            xRoundup: None,
            xInit: None,
            xShutdown: None,
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLITE_CONFIG_GETMALLOC fills the struct it points to; SQLite is not
        // initialized yet (this test binary opens no database before this line).
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETMALLOC, &raw mut current) };
        assert_eq!(rc, ffi::SQLITE_OK);
        assert_eq!(
            current.xMalloc.map(|f| f as *const () as usize),
            Some(x_malloc as *const () as usize),
            "SQLite's xMalloc is not mimalloc's"
        );
        let mut db = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name and an out pointer; the handle is closed below.
        let rc = unsafe { ffi::sqlite3_open(c":memory:".as_ptr(), &raw mut db) };
        assert_eq!(rc, ffi::SQLITE_OK);
        let sql = c"CREATE TABLE t (x TEXT); INSERT INTO t VALUES (hex(randomblob(5000)));";
        // SAFETY: an open handle and a NUL-terminated statement; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                db,
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        // SAFETY: a plain counter read.
        let used = unsafe { ffi::sqlite3_memory_used() };
        assert!(used > 10_000, "SQLite reports {used} bytes in use");
        // SAFETY: the handle opened above, closed once.
        assert_eq!(unsafe { ffi::sqlite3_close(db) }, ffi::SQLITE_OK);
    }
}
