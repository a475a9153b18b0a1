//! Public-key authentication where medic signs the challenge with a key it parsed once
//! ([`Identity`]), through libssh2's sign callback, which the `ssh2` crate does not wrap.

use std::ffi::{CString, c_char, c_int, c_uchar, c_void};

use libssh2_sys::LIBSSH2_SESSION;
use ssh2::Session;

use super::Identity;

type SignFn = extern "C" fn(
    *mut LIBSSH2_SESSION,
    *mut *mut c_uchar,
    *mut usize,
    *const c_uchar,
    usize,
    *mut *mut c_void,
) -> c_int;

unsafe extern "C" {
    /// libssh2.h: `libssh2_userauth_publickey(session, username, pubkeydata,
    /// pubkeydata_len, sign_callback, abstract)`.
    fn libssh2_userauth_publickey(
        session: *mut LIBSSH2_SESSION,
        username: *const c_char,
        pubkeydata: *const c_uchar,
        pubkeydata_len: usize,
        sign_callback: SignFn,
        abstract_: *mut *mut c_void,
    ) -> c_int;
    /// The session's allocator: `ssh2` creates sessions with libssh2's defaults
    /// (malloc/free), and libssh2 frees the signature with it.
    fn malloc(size: usize) -> *mut c_void;
}

/// libssh2's sign callback: `abstract` points at the `Identity`; the signature goes
/// into a malloc'd buffer that libssh2 frees.
extern "C" fn sign_challenge(
    _session: *mut LIBSSH2_SESSION,
    sig: *mut *mut c_uchar,
    sig_len: *mut usize,
    data: *const c_uchar,
    data_len: usize,
    abstract_: *mut *mut c_void,
) -> c_int {
    if sig.is_null() || sig_len.is_null() || data.is_null() || abstract_.is_null() {
        return -1;
    }
    // SAFETY: `abstract_` is the pointer `userauth` passed, to an `Identity` that
    // outlives the call; `data` is `data_len` bytes owned by libssh2 for the call.
    let (id, data) = unsafe {
        (
            &*((*abstract_) as *const Identity),
            std::slice::from_raw_parts(data, data_len),
        )
    };
    let signature = id.sign(data);
    // SAFETY: a fresh buffer of the signature's size, filled before it is handed over.
    unsafe {
        let buf = malloc(signature.len()).cast::<c_uchar>();
        if buf.is_null() {
            return -1;
        }
        std::ptr::copy_nonoverlapping(signature.as_ptr(), buf, signature.len());
        *sig = buf;
        *sig_len = signature.len();
    }
    0
}

/// One `publickey` authentication attempt with `id`; the session is in blocking mode.
pub(super) fn userauth(sess: &Session, user: &str, id: &Identity) -> Result<(), ssh2::Error> {
    let user = CString::new(user).map_err(|_| {
        ssh2::Error::new(
            ssh2::ErrorCode::Session(-1),
            "the user name contains a NUL byte",
        )
    })?;
    let blob = id.public_blob();
    let mut abstract_ = (id as *const Identity).cast_mut().cast::<c_void>();
    let rc = {
        let mut raw = sess.raw();
        let raw: *mut LIBSSH2_SESSION = &mut *raw;
        // SAFETY: `raw` is the live session (its lock held for the call), `user` is
        // NUL-terminated, `blob` and `abstract_` outlive the call, and the callback
        // only reads through `abstract_`.
        unsafe {
            libssh2_userauth_publickey(
                raw,
                user.as_ptr(),
                blob.as_ptr(),
                blob.len(),
                sign_challenge,
                &mut abstract_,
            )
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ssh2::Error::last_session_error(sess).unwrap_or_else(|| {
            ssh2::Error::new(
                ssh2::ErrorCode::Session(rc),
                "public key authentication failed",
            )
        }))
    }
}
