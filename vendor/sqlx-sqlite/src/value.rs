use std::borrow::Cow;
use std::cell::OnceCell;
use std::ptr::NonNull;
use std::slice;
use std::str;

use libsqlite3_sys::{
    sqlite3_free, sqlite3_mprintf, sqlite3_value, sqlite3_value_blob, sqlite3_value_bytes,
    sqlite3_value_double, sqlite3_value_dup, sqlite3_value_free, sqlite3_value_int64,
    sqlite3_value_type, SQLITE_BLOB, SQLITE_FLOAT, SQLITE_INTEGER, SQLITE_NULL, SQLITE_TEXT,
};
use sqlx_core::type_info::TypeInfo;
pub(crate) use sqlx_core::value::{Value, ValueRef};

use crate::statement::StatementHandle;
use crate::type_info::DataType;
use crate::{Sqlite, SqliteError, SqliteTypeInfo};

/// An owned handle to a [`sqlite3_value`].
///
/// # Note: Decoding is Stateful
/// The [`sqlite3_value` interface][value-methods] reserves the right to be stateful:
///
/// > Other interfaces might change the datatype for an sqlite3_value object.
/// > For example, if the datatype is initially SQLITE_INTEGER and sqlite3_value_text(V) is called
/// > to extract a text value for that integer, then subsequent calls to sqlite3_value_type(V)
/// > might return SQLITE_TEXT. Whether or not a persistent internal datatype conversion occurs is
/// > undefined and may change from one release of SQLite to the next.
///
/// Thus, this type is `!Sync` and [`SqliteValueRef`] is `!Send` and `!Sync` to prevent data races.
///
/// Additionally, this statefulness means that the return values of `sqlite3_value_bytes()` and
/// `sqlite3_value_blob()` could be invalidated by later calls to other `sqlite3_value*` methods.
///
/// To prevent undefined behavior from accessing dangling pointers, this type (and any
/// [`SqliteValueRef`] instances created from it) remembers when it was used to decode a
/// borrowed `&[u8]` or `&str` and returns an error if it is used to decode any other type.
///
/// To bypass this error, you must prove that no outstanding borrows exist.
///
/// This may be done in one of a few ways:
/// * If you hold mutable access, call [`Self::reset_borrow()`] which resets the borrowed state.
/// * If you have an immutable reference, call [`Self::clone()`] to get a new instance
///   with no outstanding borrows.
/// * If you hold a [`SqliteValueRef`], call [`SqliteValueRef::to_owned()`]
///   to get a new `SqliteValue` with no outstanding borrows.
///
/// This is *only* necessary if using the same `SqliteValue` or [`SqliteValueRef`] to decode
/// multiple different types. The vast majority of use-cases employing once-through decoding
/// should not have to worry about this.
///
/// [`sqlite3_value`]: https://www.sqlite.org/c3ref/value.html
/// [value-methods]: https://www.sqlite.org/c3ref/value_blob.html
pub struct SqliteValue(ValueHandle);

/// A borrowed reference to a [`sqlite3_value`].
///
/// Semantically, this behaves as a reference to [`SqliteValue`].
///
/// # Note: Decoding is Stateful
/// See [`SqliteValue`] for details.
pub struct SqliteValueRef<'r>(Cow<'r, ValueHandle>);

impl SqliteValue {
    /// acctd patch: copies column `index` of the statement's current row out of SQLite
    /// (an integer, a real, or one allocation for text and blobs) instead of
    /// `sqlite3_value_dup`, which costs a `sqlite3_malloc` per value (each one an
    /// `sqlite3_initialize` check behind a memory barrier) and another for its text, all
    /// freed later on the thread that decodes the row.
    pub(crate) fn copy_of_column(
        statement: &StatementHandle,
        index: usize,
        column_type: Option<SqliteTypeInfo>,
    ) -> Self {
        let copied = match statement.column_type(index) {
            SQLITE_INTEGER => Copied::Integer(statement.column_int64(index)),
            SQLITE_FLOAT => Copied::Real(statement.column_double(index)),
            SQLITE_TEXT => Copied::Text(statement.column_blob(index).into()),
            SQLITE_BLOB => Copied::Blob(statement.column_blob(index).into()),
            _ => Copied::Null,
        };
        Self(ValueHandle {
            repr: Repr::Copied(copied),
            column_type,
            borrowed_blob: OnceCell::new(),
            rendered: OnceCell::new(),
        })
    }

    /// Prove that there are no outstanding borrows of this instance.
    ///
    /// Call this after decoding a borrowed `&[u8]` or `&str`
    /// to reset the internal borrowed state and allow decoding of other types.
    pub fn reset_borrow(&mut self) {
        self.0.reset_blob_borrow();
    }

    /// Call [`sqlite3_value_dup()`] to create a new instance of this type.
    ///
    /// Returns an error if the call returns a null pointer, indicating that
    /// SQLite was unable to allocate the additional memory required.
    ///
    /// Non-panicking version of [`Self::clone()`].
    ///
    /// [`sqlite3_value_dup()`]: https://www.sqlite.org/c3ref/value_dup.html
    pub fn try_clone(&self) -> Result<Self, SqliteError> {
        self.0.try_dup().map(Self)
    }
}

impl Clone for SqliteValue {
    /// Call [`sqlite3_value_dup()`] to create a new instance of this type.
    ///
    /// # Panics
    /// If [`sqlite3_value_dup()`] returns a null pointer, indicating an out-of-memory condition.
    ///
    /// See [`Self::try_clone()`] for a non-panicking version.
    ///
    /// [`sqlite3_value_dup()`]: https://www.sqlite.org/c3ref/value_dup.html
    fn clone(&self) -> Self {
        self.try_clone().expect("failed to clone `SqliteValue`")
    }
}

impl Value for SqliteValue {
    type Database = Sqlite;

    fn as_ref(&self) -> SqliteValueRef<'_> {
        SqliteValueRef::value(self)
    }

    fn type_info(&self) -> Cow<'_, SqliteTypeInfo> {
        Cow::Owned(self.0.type_info())
    }

    fn is_null(&self) -> bool {
        self.0.is_null()
    }
}

impl<'r> SqliteValueRef<'r> {
    /// Attempt to duplicate the internal `sqlite3_value` with [`sqlite3_value_dup()`].
    ///
    /// Returns an error if the call returns a null pointer, indicating that
    /// SQLite was unable to allocate the additional memory required.
    ///
    /// Non-panicking version of [`Self::try_to_owned()`].
    ///
    /// [`sqlite3_value_dup()`]: https://www.sqlite.org/c3ref/value_dup.html
    pub fn try_to_owned(&self) -> Result<SqliteValue, SqliteError> {
        self.0.try_dup().map(SqliteValue)
    }

    pub(crate) fn value(value: &'r SqliteValue) -> Self {
        Self(Cow::Borrowed(&value.0))
    }

    /// # Safety
    /// The supplied sqlite3_value must not be null and SQLite must free it.
    /// It will not be freed on drop.
    /// The lifetime on this struct should tie it to whatever scope it's valid for before SQLite frees it.
    #[allow(unused)]
    pub(crate) unsafe fn borrowed(value: *mut sqlite3_value) -> Self {
        debug_assert!(!value.is_null());
        let handle = ValueHandle::temporary(NonNull::new_unchecked(value));
        Self(Cow::Owned(handle))
    }

    // NOTE: `int()` is deliberately omitted because it will silently truncate a wider value,
    // which is likely to cause bugs:
    // https://github.com/launchbadge/sqlx/issues/3179
    // (Similar bug in Postgres): https://github.com/launchbadge/sqlx/issues/3161
    pub(super) fn int64(&self) -> Result<i64, BorrowedBlobError> {
        self.0.int64()
    }

    pub(super) fn double(&self) -> Result<f64, BorrowedBlobError> {
        self.0.double()
    }

    pub(super) fn blob_borrowed(&self) -> &'r [u8] {
        // SAFETY: lifetime is matched to `'r`
        unsafe { self.0.blob_borrowed() }
    }

    pub(super) fn with_temp_blob<R>(&self, op: impl FnOnce(&[u8]) -> R) -> R {
        self.0.with_blob(op)
    }

    pub(super) fn blob_owned(&self) -> Vec<u8> {
        self.with_temp_blob(|blob| blob.to_vec())
    }

    pub(super) fn text_borrowed(&self) -> Result<&'r str, str::Utf8Error> {
        // SAFETY: lifetime is matched to `'r`
        unsafe { self.0.text_borrowed() }
    }

    pub(super) fn with_temp_text<R>(
        &self,
        op: impl FnOnce(&str) -> R,
    ) -> Result<R, str::Utf8Error> {
        self.0.with_blob(|blob| str::from_utf8(blob).map(op))
    }

    pub(super) fn text_owned(&self) -> Result<String, str::Utf8Error> {
        self.with_temp_text(|text| text.to_string())
    }
}

impl<'r> ValueRef<'r> for SqliteValueRef<'r> {
    type Database = Sqlite;

    /// Attempt to duplicate the internal `sqlite3_value` with [`sqlite3_value_dup()`].
    ///
    /// # Panics
    /// If [`sqlite3_value_dup()`] returns a null pointer, indicating an out-of-memory condition.
    ///
    /// See [`Self::try_to_owned()`] for a non-panicking version.
    ///
    /// [`sqlite3_value_dup()`]: https://www.sqlite.org/c3ref/value_dup.html
    fn to_owned(&self) -> SqliteValue {
        SqliteValue(
            self.0
                .try_dup()
                .expect("failed to convert SqliteValueRef to owned SqliteValue"),
        )
    }

    fn type_info(&self) -> Cow<'_, SqliteTypeInfo> {
        Cow::Owned(self.0.type_info())
    }

    fn is_null(&self) -> bool {
        self.0.is_null()
    }
}

pub(crate) struct ValueHandle {
    repr: Repr,
    column_type: Option<SqliteTypeInfo>,
    // Note: `std::cell` version
    borrowed_blob: OnceCell<Blob>,
    /// acctd patch: a copied number's text, rendered on the first text or blob access.
    rendered: OnceCell<Box<[u8]>>,
}

enum Repr {
    /// A `sqlite3_value`, freed on drop when `free_on_drop`.
    Handle {
        value: NonNull<sqlite3_value>,
        free_on_drop: bool,
    },
    /// acctd patch: a value copied out of a row ([`SqliteValue::copy_of_column`]). Its
    /// accessors convert between storage classes exactly as `sqlite3_value_int64`,
    /// `sqlite3_value_double` and `sqlite3_value_text` do (`sqlite3VdbeIntValue`,
    /// `sqlite3VdbeRealValue`, `vdbeMemRenderNum` of SQLite 3.51).
    Copied(Copied),
}

#[derive(Clone)]
enum Copied {
    Null,
    Integer(i64),
    Real(f64),
    Text(Box<[u8]>),
    Blob(Box<[u8]>),
}

struct Blob {
    ptr: *const u8,
    len: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("given `SqliteValue` was previously decoded as BLOB or TEXT; `SqliteValue::reset_borrow()` must be called first")]
pub(crate) struct BorrowedBlobError;

// SAFE: only protected value objects are stored in SqliteValue
unsafe impl Send for ValueHandle {}

// SAFETY: the `sqlite3_value_*()` methods reserve the right to be stateful,
// which means method calls aren't thread-safe without mutual exclusion.
//
// impl !Sync for ValueHandle {}

impl ValueHandle {
    /// # Safety
    /// The `sqlite3_value` must be valid and SQLite must not free it. It will be freed on drop.
    unsafe fn try_dup_of(
        value: *mut sqlite3_value,
        column_type: Option<SqliteTypeInfo>,
    ) -> Result<Self, SqliteError> {
        // SAFETY: caller must ensure `value` is valid.
        let value =
            unsafe { NonNull::new(sqlite3_value_dup(value)).ok_or_else(SqliteError::nomem)? };

        Ok(Self {
            repr: Repr::Handle {
                value,
                free_on_drop: true,
            },
            column_type,
            borrowed_blob: OnceCell::new(),
            rendered: OnceCell::new(),
        })
    }

    fn temporary(value: NonNull<sqlite3_value>) -> Self {
        Self {
            repr: Repr::Handle {
                value,
                free_on_drop: false,
            },
            column_type: None,
            borrowed_blob: OnceCell::new(),
            rendered: OnceCell::new(),
        }
    }

    fn try_dup(&self) -> Result<Self, SqliteError> {
        match &self.repr {
            // SAFETY: `value` is initialized
            Repr::Handle { value, .. } => unsafe {
                Self::try_dup_of(value.as_ptr(), self.column_type.clone())
            },
            Repr::Copied(copied) => Ok(Self {
                repr: Repr::Copied(copied.clone()),
                column_type: self.column_type.clone(),
                borrowed_blob: OnceCell::new(),
                rendered: OnceCell::new(),
            }),
        }
    }

    fn value_type_info(&self) -> SqliteTypeInfo {
        let code = match &self.repr {
            Repr::Handle { value, .. } => unsafe { sqlite3_value_type(value.as_ptr()) },
            Repr::Copied(Copied::Null) => SQLITE_NULL,
            Repr::Copied(Copied::Integer(_)) => SQLITE_INTEGER,
            Repr::Copied(Copied::Real(_)) => SQLITE_FLOAT,
            Repr::Copied(Copied::Text(_)) => SQLITE_TEXT,
            Repr::Copied(Copied::Blob(_)) => SQLITE_BLOB,
        };
        SqliteTypeInfo(DataType::from_code(code))
    }

    fn type_info(&self) -> SqliteTypeInfo {
        let value_type = self.value_type_info();

        // Assume the actual value type is more accurate, if it's not NULL.
        match &self.column_type {
            Some(column_type) if value_type.is_null() => column_type.clone(),
            _ => value_type,
        }
    }

    fn int64(&self) -> Result<i64, BorrowedBlobError> {
        // SAFETY: we have to be certain the caller isn't still holding a borrow from `.blob_borrowed()`
        self.assert_blob_not_borrowed()?;

        Ok(match &self.repr {
            Repr::Handle { value, .. } => unsafe { sqlite3_value_int64(value.as_ptr()) },
            Repr::Copied(Copied::Null) => 0,
            Repr::Copied(Copied::Integer(i)) => *i,
            Repr::Copied(Copied::Real(r)) => convert::real_to_i64(*r),
            Repr::Copied(Copied::Text(bytes) | Copied::Blob(bytes)) => convert::atoi64(bytes),
        })
    }

    fn double(&self) -> Result<f64, BorrowedBlobError> {
        // SAFETY: we have to be certain the caller isn't still holding a borrow from `.blob_borrowed()`
        self.assert_blob_not_borrowed()?;

        Ok(match &self.repr {
            Repr::Handle { value, .. } => unsafe { sqlite3_value_double(value.as_ptr()) },
            Repr::Copied(Copied::Null) => 0.0,
            #[allow(clippy::cast_precision_loss)]
            Repr::Copied(Copied::Integer(i)) => *i as f64,
            Repr::Copied(Copied::Real(r)) => *r,
            Repr::Copied(Copied::Text(bytes) | Copied::Blob(bytes)) => convert::atof(bytes),
        })
    }

    fn is_null(&self) -> bool {
        self.value_type_info().is_null()
    }
}

impl Clone for ValueHandle {
    fn clone(&self) -> Self {
        self.try_dup().unwrap()
    }
}

impl Drop for ValueHandle {
    fn drop(&mut self) {
        if let Repr::Handle {
            value,
            free_on_drop: true,
        } = &self.repr
        {
            unsafe {
                sqlite3_value_free(value.as_ptr());
            }
        }
    }
}

impl ValueHandle {
    fn assert_blob_not_borrowed(&self) -> Result<(), BorrowedBlobError> {
        if self.borrowed_blob.get().is_none() {
            Ok(())
        } else {
            Err(BorrowedBlobError)
        }
    }

    fn reset_blob_borrow(&mut self) {
        self.borrowed_blob.take();
    }

    fn get_blob(&self) -> Option<Blob> {
        let value = match &self.repr {
            Repr::Handle { value, .. } => {
                if let Some(blob) = self.borrowed_blob.get() {
                    return Some(Blob { ..*blob });
                }
                value
            }
            // acctd patch: a copied value's bytes are taken from `self` each time (never
            // from a pointer cached before the value moved); `borrowed_blob` only records
            // that they were borrowed. They never change: `rendered` is set once.
            Repr::Copied(copied) => {
                let bytes: &[u8] = match copied {
                    Copied::Text(bytes) | Copied::Blob(bytes) => bytes,
                    Copied::Null => &[],
                    Copied::Integer(i) => self
                        .rendered
                        .get_or_init(|| i.to_string().into_bytes().into()),
                    Copied::Real(r) => self.rendered.get_or_init(|| convert::render_real(*r)),
                };
                if bytes.is_empty() {
                    // empty blobs are NULL
                    return None;
                }
                return Some(Blob {
                    ptr: bytes.as_ptr(),
                    len: bytes.len(),
                });
            }
        };

        // SAFETY: calling `sqlite3_value_bytes` from multiple threads at once is a data race.
        let len = unsafe { sqlite3_value_bytes(value.as_ptr()) };

        // This likely means UB in SQLite itself or our usage of it;
        // signed integer overflow is UB in the C standard.
        let len = usize::try_from(len).unwrap_or_else(|_| {
            panic!("sqlite3_value_bytes() returned value out of range for usize: {len}")
        });

        if len == 0 {
            // empty blobs are NULL
            return None;
        }

        let ptr = unsafe { sqlite3_value_blob(value.as_ptr()) } as *const u8;
        debug_assert!(!ptr.is_null());

        Some(Blob { ptr, len })
    }

    fn with_blob<R>(&self, with_blob: impl FnOnce(&[u8]) -> R) -> R {
        let Some(blob) = self.get_blob() else {
            return with_blob(&[]);
        };

        // SAFETY: the slice cannot outlive the call
        with_blob(unsafe { blob.as_slice() })
    }

    /// # Safety
    /// Caller must ensure lifetime '`b` cannot outlive `self`.
    unsafe fn blob_borrowed<'a>(&self) -> &'a [u8] {
        let Some(blob) = self.get_blob() else {
            return &[];
        };

        // SAFETY: we need to store that the blob was borrowed
        // to prevent
        let blob = self.borrowed_blob.get_or_init(|| blob);

        unsafe { blob.as_slice() }
    }

    /// # Safety
    /// Caller must ensure lifetime '`b` cannot outlive `self`.
    unsafe fn text_borrowed<'b>(&self) -> Result<&'b str, str::Utf8Error> {
        let Some(blob) = self.get_blob() else {
            return Ok("");
        };

        // SAFETY: lifetime of `blob` will be tied to `'b`.
        let s = str::from_utf8(unsafe { blob.as_slice() })?;

        // We only store the borrow after we ensure the string is valid.
        self.borrowed_blob.set(blob).ok();

        Ok(s)
    }
}

impl Blob {
    /// # Safety
    /// `'a` must not outlive the `sqlite3_value` this blob came from.
    unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        slice::from_raw_parts(self.ptr, self.len)
    }
}

/// acctd patch: SQLite 3.51's conversions between storage classes, for copied values.
/// Ports of `sqlite3RealToI64`, `sqlite3Atoi64` and `sqlite3AtoF`, and the `"%!.15g"`
/// rendering of `vdbeMemRenderNum` through SQLite's own `sqlite3_mprintf`.
///
/// Exact for UTF-8 databases (acctd's; text is read as UTF-8 in any case, but SQLite reads
/// a blob's bytes in the database's encoding), and where the C compiler does not fuse
/// `dekkerMul2`'s multiply-adds (x86_64; GCC may on aarch64, Rust never does).
mod convert {
    use std::ffi::CStr;

    use super::{sqlite3_free, sqlite3_mprintf};

    const LARGEST_UINT64: u64 = u64::MAX;

    /// `sqlite3Isspace`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
    fn is_space(c: u8) -> bool {
        c == b' ' || (b'\t'..=b'\r').contains(&c)
    }

    /// `sqlite3RealToI64`.
    #[allow(clippy::cast_possible_truncation)]
    pub(super) fn real_to_i64(r: f64) -> i64 {
        if r < -9_223_372_036_854_774_784.0 {
            i64::MIN
        } else if r > 9_223_372_036_854_774_784.0 {
            i64::MAX
        } else {
            r as i64
        }
    }

    /// `sqlite3Atoi64`'s value: leading spaces, a sign, then as many digits as there are,
    /// saturating at the ends of `i64`; 0 without digits.
    #[allow(clippy::cast_possible_wrap)]
    pub(super) fn atoi64(z: &[u8]) -> i64 {
        let mut i = 0;
        while i < z.len() && is_space(z[i]) {
            i += 1;
        }
        let mut neg = false;
        if i < z.len() && (z[i] == b'-' || z[i] == b'+') {
            neg = z[i] == b'-';
            i += 1;
        }
        while i < z.len() && z[i] == b'0' {
            i += 1;
        }
        let digits = z[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let mut u: u64 = 0;
        for &c in &z[i..i + digits] {
            u = u.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        }
        // More than 19 digits, or 19 at or over 2^63: the end of the range.
        if digits > 19 || (digits == 19 && u >= 1 << 63) {
            return if neg { i64::MIN } else { i64::MAX };
        }
        if neg {
            -(u as i64)
        } else {
            u as i64
        }
    }

    /// Dekker's multiplication of the double-double `x` by `y + yy` (`dekkerMul2`).
    fn dekker_mul2(x: &mut [f64; 2], y: f64, yy: f64) {
        const MASK: u64 = 0xffff_ffff_fc00_0000;
        let hx = f64::from_bits(x[0].to_bits() & MASK);
        let tx = x[0] - hx;
        let hy = f64::from_bits(y.to_bits() & MASK);
        let ty = y - hy;
        let p = hx * hy;
        let q = hx * ty + tx * hy;
        let c = p + q;
        let mut cc = p - c + q + tx * ty;
        cc = x[0] * yy + x[1] * y + cc;
        x[0] = c + cc;
        x[1] = c - x[0];
        x[1] += cc;
    }

    /// `sqlite3AtoF`'s value: the longest prefix that reads as a real number, 0.0 without.
    #[allow(
        clippy::excessive_precision,
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub(super) fn atof(z: &[u8]) -> f64 {
        let end = z.len();
        let mut i = 0;
        let mut sign = 1;
        let mut s: u64 = 0;
        let mut d: i32 = 0;
        let mut esign = 1;
        let mut e: i32 = 0;
        while i < end && is_space(z[i]) {
            i += 1;
        }
        if i >= end {
            return 0.0;
        }
        if z[i] == b'-' {
            sign = -1;
            i += 1;
        } else if z[i] == b'+' {
            i += 1;
        }
        'parse: {
            while i < end && z[i].is_ascii_digit() {
                s = s * 10 + u64::from(z[i] - b'0');
                i += 1;
                if s >= (LARGEST_UINT64 - 9) / 10 {
                    while i < end && z[i].is_ascii_digit() {
                        i += 1;
                        d += 1;
                    }
                }
            }
            if i >= end {
                break 'parse;
            }
            if z[i] == b'.' {
                i += 1;
                while i < end && z[i].is_ascii_digit() {
                    if s < (LARGEST_UINT64 - 9) / 10 {
                        s = s * 10 + u64::from(z[i] - b'0');
                        d -= 1;
                    }
                    i += 1;
                }
            }
            if i >= end {
                break 'parse;
            }
            if z[i] == b'e' || z[i] == b'E' {
                i += 1;
                if i >= end {
                    break 'parse;
                }
                if z[i] == b'-' {
                    esign = -1;
                    i += 1;
                } else if z[i] == b'+' {
                    i += 1;
                }
                while i < end && z[i].is_ascii_digit() {
                    e = if e < 10000 {
                        e * 10 + i32::from(z[i] - b'0')
                    } else {
                        10000
                    };
                    i += 1;
                }
            }
        }
        if s == 0 {
            return if sign < 0 { -0.0 } else { 0.0 };
        }
        e = e * esign + d;
        while e > 0 && s < (LARGEST_UINT64 - 0x7ff) / 10 {
            s *= 10;
            e -= 1;
        }
        while e < 0 && s % 10 == 0 {
            s /= 10;
            e += 1;
        }
        let mut rr = [s as f64, 0.0];
        if rr[0] <= 18_446_744_073_709_549_568.0 {
            let s2 = rr[0] as u64;
            rr[1] = if s >= s2 {
                (s - s2) as f64
            } else {
                -((s2 - s) as f64)
            };
        }
        if e > 0 {
            while e >= 100 {
                e -= 100;
                dekker_mul2(&mut rr, 1.0e+100, -1.590_289_110_975_991_804_6e83);
            }
            while e >= 10 {
                e -= 10;
                dekker_mul2(&mut rr, 1.0e+10, 0.0);
            }
            while e >= 1 {
                e -= 1;
                dekker_mul2(&mut rr, 1.0e+01, 0.0);
            }
        } else {
            while e <= -100 {
                e += 100;
                dekker_mul2(&mut rr, 1.0e-100, -1.999_189_980_260_288_361_96e-117);
            }
            while e <= -10 {
                e += 10;
                dekker_mul2(&mut rr, 1.0e-10, -3.643_219_731_549_774_157_9e-27);
            }
            while e <= -1 {
                e += 1;
                dekker_mul2(&mut rr, 1.0e-01, -5.551_115_123_125_782_702_1e-18);
            }
        }
        let r = rr[0] + rr[1];
        let r = if r.is_nan() { f64::INFINITY } else { r };
        if sign < 0 {
            -r
        } else {
            r
        }
    }

    /// `vdbeMemRenderNum` of a real: SQLite's own `"%!.15g"`.
    pub(super) fn render_real(r: f64) -> Box<[u8]> {
        // SAFETY: a constant format taking one double; the result is freed here.
        unsafe {
            let text = sqlite3_mprintf(c"%!.15g".as_ptr(), r);
            assert!(!text.is_null(), "SQLite failed to allocate a rendered real");
            let bytes = CStr::from_ptr(text).to_bytes().into();
            sqlite3_free(text.cast());
            bytes
        }
    }
}
