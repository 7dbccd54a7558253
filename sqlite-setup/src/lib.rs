//! Process-wide setup of the bundled `SQLite`, done once before the first connection opens.
//!
//! - **mimalloc as `SQLite`'s allocator.** `SQLite` calls `malloc` from libc on its own,
//!   bypassing Rust's global allocator. On glibc the `SQLite` worker thread of
//!   `acctd simulate` spent 18.5 % of all samples in libc, mostly `_int_malloc`,
//!   `malloc_consolidate` and `unlink_chunk`; 6.3 % with mimalloc (BENCHMARKS.md).
//! - **Stable query plans** (`SQLITE_DBCONFIG_ENABLE_QPSG` on every connection). Without
//!   it `SQLite` (3.50) plans `LIMIT ?` with the bound value as a constant and marks the
//!   statement as depending on it: every new binding recompiles the statement on its
//!   next step (`sqlite3Reprepare`: the whole parse and plan again). sea-orm binds the
//!   `LIMIT 1` of every `.one()`, so every primary-key read of an org was parsed anew;
//!   under entitlement load that was a quarter of `acctd serve`'s CPU. With the guarantee
//!   on, plans do not depend on bound values, so a cached statement is reused as is.
//!
//! - **No allocation statistics** (`SQLITE_CONFIG_MEMSTATUS` off). `SQLite` counts every
//!   allocation and free under one process-wide mutex by default; nothing in acctd reads
//!   the counts (`sqlite3_memory_used`). Locking and unlocking that mutex took 6 % of
//!   `acctd tick`'s samples on `SQLite` (BENCHMARKS.md).
//!
//! And one setting of mimalloc itself, for the daemon: [`purge_freed_memory_within`].
//!
//! This is the workspace's only `unsafe` code, kept in its own crate so that `acctd`
//! itself keeps `unsafe_code = "forbid"`.
#![warn(clippy::pedantic)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{c_char, c_int, c_void};
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

unsafe extern "C" fn enable_qpsg(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection SQLite is opening; SQLITE_DBCONFIG_ENABLE_QPSG takes
    // an int (1: on) and an int* for the new setting, which may be null.
    unsafe {
        ffi::sqlite3_db_config(
            db,
            ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
            c_int::from(1_u8),
            std::ptr::null_mut::<c_int>(),
        )
    }
}

/// What to set up, and (as returned by [`install`]) what took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// mimalloc as `SQLite`'s allocator.
    pub mimalloc: bool,
    /// The query planner stability guarantee on every connection opened afterwards.
    pub stable_plans: bool,
    /// `SQLite` keeps no allocation statistics, so an allocation takes no mutex.
    pub no_memstatus: bool,
}

/// Sets `SQLite` up as `want` asks. Only the first call in a process acts; later calls
/// return its outcome. The allocator and the statistics can only be switched before
/// `SQLite` is first initialized (before the first connection opens): if that has already
/// happened they are left alone (`false` in the result). Stable plans apply to every
/// connection opened after the call.
pub fn install(want: Setup) -> Setup {
    static DONE: OnceLock<Setup> = OnceLock::new();
    *DONE.get_or_init(|| {
        let mimalloc = want.mimalloc && {
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
            // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to an sqlite3_mem_methods,
            // which SQLite copies. OnceLock runs this once; SQLite refuses it
            // (SQLITE_MISUSE) once initialized, so a late call changes nothing.
            let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) };
            rc == ffi::SQLITE_OK
        };
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int (0: off); refused (SQLITE_MISUSE)
        // once SQLite is initialized, which changes nothing.
        let no_memstatus = want.no_memstatus
            && unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, c_int::from(0_u8)) }
                == ffi::SQLITE_OK;
        // After the allocator and the statistics: registering an extension initializes
        // SQLite.
        // SAFETY: `enable_qpsg` has the signature SQLite calls an automatic extension
        // with; it stays valid for the life of the process.
        let stable_plans = want.stable_plans
            && unsafe { ffi::sqlite3_auto_extension(Some(enable_qpsg)) } == ffi::SQLITE_OK;
        Setup {
            mimalloc,
            stable_plans,
            no_memstatus,
        }
    })
}

/// mimalloc's `mi_option_purge_delay` (its `mi_option_e`, the same index in v2 and v3;
/// libmimalloc-sys does not name it).
const MI_OPTION_PURGE_DELAY: mi::mi_option_t = 15;

/// mimalloc's own purge delay, in milliseconds.
pub const DEFAULT_PURGE_DELAY_MS: u32 = 1_000;

/// Tells mimalloc to return memory that is freed and left unused to the OS after `ms`
/// milliseconds (its default: [`DEFAULT_PURGE_DELAY_MS`]). A process whose allocations
/// come and go in waves then holds less at its peak, for more `madvise` calls.
///
/// Call it first thing in `main`: mimalloc schedules a purge when memory is first freed,
/// with the delay of that moment, and until that purge runs it schedules no sooner one.
/// `MIMALLOC_PURGE_DELAY` in the environment wins: then nothing changes and the result
/// is `false`.
#[must_use]
pub fn purge_freed_memory_within(ms: u32) -> bool {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return false;
    }
    // SAFETY: mi_option_set takes any option index and value; an index it does not know
    // is ignored. mimalloc reads the option each time it schedules or runs a purge.
    unsafe { mi::mi_option_set(MI_OPTION_PURGE_DELAY, std::ffi::c_long::from(ms)) };
    true
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    /// Runs `sql` (no rows wanted) on `db`.
    fn exec(db: *mut ffi::sqlite3, sql: &CStr) {
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
        assert_eq!(rc, ffi::SQLITE_OK, "{sql:?}");
    }

    /// Opens an in-memory database holding `t(id TEXT PRIMARY KEY, v)` with 100 rows,
    /// reads three of them through one prepared `… WHERE id = ?1 LIMIT ?2` (as sea-orm's
    /// `.one()` does), and returns how often `SQLite` recompiled that statement.
    fn reprepares_of_a_keyed_read() -> c_int {
        let mut db = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name and an out pointer; the handle is closed below.
        let rc = unsafe { ffi::sqlite3_open(c":memory:".as_ptr(), &raw mut db) };
        assert_eq!(rc, ffi::SQLITE_OK);
        exec(
            db,
            c"CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER);
              WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99)
              INSERT INTO t SELECT 'k' || i, i FROM n;",
        );
        let mut stmt = std::ptr::null_mut();
        // SAFETY: an open handle, a NUL-terminated statement (length -1), out pointers.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                c"SELECT v FROM t WHERE id = ?1 LIMIT ?2".as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &raw mut stmt,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        for (key, want) in [(c"k7", 7), (c"k42", 42), (c"k99", 99)] {
            // SAFETY: a prepared statement, parameters 1 and 2 exist, the key outlives
            // the step (SQLITE_STATIC semantics: destructor None).
            unsafe {
                assert_eq!(
                    ffi::sqlite3_bind_text(stmt, 1, key.as_ptr(), -1, None),
                    ffi::SQLITE_OK
                );
                assert_eq!(ffi::sqlite3_bind_int64(stmt, 2, 1), ffi::SQLITE_OK);
                assert_eq!(ffi::sqlite3_step(stmt), ffi::SQLITE_ROW);
                assert_eq!(ffi::sqlite3_column_int64(stmt, 0), want);
                assert_eq!(ffi::sqlite3_reset(stmt), ffi::SQLITE_OK);
            }
        }
        // SAFETY: a counter read on a live statement, then both handles closed once.
        unsafe {
            let reprepares = ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
            assert_eq!(ffi::sqlite3_finalize(stmt), ffi::SQLITE_OK);
            assert_eq!(ffi::sqlite3_close(db), ffi::SQLITE_OK);
            reprepares
        }
    }

    /// One test, since the setup is process-wide and must come before any connection.
    #[test]
    fn sqlite_allocates_through_mimalloc_uncounted_and_keeps_its_plans_once_installed() {
        let all = Setup {
            mimalloc: true,
            stable_plans: true,
            no_memstatus: true,
        };
        assert_eq!(install(all), all, "SQLite refused part of the setup");
        let none = Setup {
            mimalloc: false,
            stable_plans: false,
            no_memstatus: false,
        };
        assert_eq!(
            install(none),
            all,
            "a second call reports the first one's outcome"
        );

        // The allocator: memory SQLite hands out lives in mimalloc's heap (this test
        // binary's own allocator is the C library's).
        // SAFETY: sqlite3_malloc returns memory from SQLite's configured allocator (or
        // null); it is freed with sqlite3_free.
        unsafe {
            let p = ffi::sqlite3_malloc(1_000);
            assert!(!p.is_null());
            assert!(
                mi::mi_is_in_heap_region(p),
                "SQLite's memory is not mimalloc's"
            );
            // No statistics: an outstanding allocation is not counted.
            assert_eq!(
                ffi::sqlite3_memory_used(),
                0,
                "SQLite counts its allocations"
            );
            ffi::sqlite3_free(p);
            let own = Box::new([0_u8; 1_000]);
            assert!(
                !mi::mi_is_in_heap_region(std::ptr::from_ref(&*own).cast()),
                "the check cannot tell the allocators apart"
            );
        }

        // Stable plans: re-binding `LIMIT ?` does not recompile the statement…
        assert_eq!(reprepares_of_a_keyed_read(), 0);
        // …and without the automatic extension it does, on every step after a new binding,
        // the first one included (the behaviour this setup exists to avoid).
        // SAFETY: unregisters every automatic extension; no connection is opening.
        unsafe { ffi::sqlite3_reset_auto_extension() };
        assert_eq!(reprepares_of_a_keyed_read(), 3);
    }

    /// The option index is mimalloc's purge delay: its default until it is set.
    #[test]
    fn the_purge_delay_is_mimallocs_option_of_that_index() {
        // SAFETY: a read of one of mimalloc's options.
        let get = || unsafe { mi::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            assert!(!purge_freed_memory_within(100));
            return;
        }
        assert_eq!(
            get(),
            DEFAULT_PURGE_DELAY_MS.into(),
            "not mimalloc's purge delay"
        );
        assert!(purge_freed_memory_within(100));
        assert_eq!(get(), 100);
        assert!(purge_freed_memory_within(DEFAULT_PURGE_DELAY_MS));
    }
}
