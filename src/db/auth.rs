//! How racelab's own PostgreSQL servers let racelab in and keep everyone
//! else out: the private unix socket (in a directory only racelab's user,
//! and the server's user, can enter) needs nothing more, and any TCP
//! listener needs the cluster's own random password, checked with
//! SCRAM-SHA-256. Here: the `pg_hba.conf` that says so, and the SCRAM
//! verifier racelab stores for the password, computed here so that the
//! password itself never reaches the server, its log or its catalog.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The client authentication of every cluster racelab starts.
///
/// The unix socket is `trust`: its directory (mode 0700) is the guard, and
/// a password on it would cost every buyer's connection a SCRAM exchange
/// for nothing. (`peer` would not do: as root, racelab connects as the
/// `postgres` database user without being that OS user.) TCP, on loopback
/// only, needs the password; a cluster that was given none refuses every
/// TCP login.
pub const PG_HBA: &str = "\
# Written by racelab. The unix socket's directory (mode 0700) admits only
# racelab's user (and the server's); TCP needs the cluster's password.
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
";

/// PBKDF2 iterations of the stored verifier, which every TCP login repeats
/// on the client. Iterations exist to slow down guessing a human's
/// password from a stolen verifier or an overheard exchange; racelab's
/// passwords are 256 random bits, which no iteration count makes any
/// easier or harder to guess. RFC 7677's 4096 would only cost every TCP
/// login a derivation (measured here: 165 ms in a debug build, 1-2 ms in
/// a release one, per connection, so a 1,000-buyer race over TCP would
/// spend seconds on it). PostgreSQL accepts any count from 1
/// (`scram_iterations`); one it is.
pub const SCRAM_ITERATIONS: u32 = 1;

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password`
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as
/// `ALTER ROLE ... PASSWORD` accepts it), with a fresh random salt.
pub fn scram_verifier(password: &Secret) -> String {
    use rand::RngCore as _;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    scram_verifier_with(password.expose().as_bytes(), &salt, SCRAM_ITERATIONS)
}

fn scram_verifier_with(password: &[u8], salt: &[u8], iterations: u32) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let salted = hi(password, salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64(salt),
        b64(&stored_key),
        b64(&server_key)
    )
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC-SHA-256, one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let key = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes a key of any length");
    let mut m = key.clone();
    m.update(salt);
    m.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut m = key.clone();
        m.update(&u);
        u = m.finalize().into_bytes().into();
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// A password as a single-quoted SQL literal (a verifier has no quote, but
/// quoting is not left to that).
pub fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against an independent implementation (Python's
    /// `hashlib.pbkdf2_hmac` and `hmac`); that PostgreSQL accepts it is
    /// checked by every TCP login of the integration tests.
    #[test]
    fn the_verifier_matches_an_independent_one() {
        let salt = [
            0x4b, 0x8a, 0x1c, 0x0f, 0x52, 0x90, 0x6e, 0x33, 0xa1, 0x07, 0x5d, 0xc4, 0x99, 0x21,
            0xe6, 0x78,
        ];
        let v = scram_verifier_with(b"pencil", &salt, 4096);
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:S4ocD1KQbjOhB13EmSHmeA==$BbpupGB7FNeY5D04vzsux/dza4dTKO8nqoADYDcG9Og=:\
             WWpXGxmGn3ySQFtz0kiNj83/Hrm1JjdjydUHkV/wAcA="
        );
        let t = std::time::Instant::now();
        let _ = scram_verifier(&Secret::random());
        eprintln!("verifier in {:?}", t.elapsed());
    }
}
