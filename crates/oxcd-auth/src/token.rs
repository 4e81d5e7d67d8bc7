//! Auth tokens (etcd's `simple_token.go` and `jwt.go`), chosen by `--auth-token`.
//!
//! * **simple**: `<16 random letters>.<raft index>`. Authenticate goes through raft and
//!   every member registers the token when it applies the entry, so a token works on every
//!   member once it has applied that index ([`simple_token_index`]). A token lives
//!   `--auth-token-ttl` after its last use; disabling auth, deleting the user or changing
//!   its password drops it.
//! * **jwt**: a signed JWT with etcd's claims (`username`, `revision`, `exp`), verifiable by
//!   any member with the same keys. A token of an older auth revision fails with "auth
//!   revision is old", so clients authenticate again.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::AuthError;
use crate::AuthInfo;

/// etcd's `--auth-token-ttl` default and the JWT `ttl` default: 5 minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Letters of a simple token's random prefix.
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Length of a simple token's random prefix.
const PREFIX_LEN: usize = 16;

/// The raft index a simple token was assigned at (`<prefix>.<index>`); `None` if the token
/// is not of that form. A member must have applied this index before it can know the token.
pub fn simple_token_index(token: &str) -> Option<u64> {
    let (prefix, index) = token.split_once('.')?;
    if prefix.contains('.') || index.contains('.') {
        return None;
    }
    index.parse().ok()
}

/// The token provider `--auth-token` chose.
pub enum TokenProvider {
    /// Simple (unsigned) tokens kept in every member's memory.
    Simple(SimpleTokens),
    /// Signed JWTs.
    Jwt(JwtTokens),
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenProvider::Simple(_) => f.write_str("TokenProvider::Simple"),
            TokenProvider::Jwt(j) => write!(f, "TokenProvider::Jwt({:?})", j.algorithm),
        }
    }
}

impl TokenProvider {
    /// A provider from `--auth-token` (`simple`, or
    /// `jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<duration>]`) and
    /// `--auth-token-ttl` (simple tokens). The error is one line for the operator.
    pub fn from_options(opts: &str, simple_ttl: Duration) -> Result<TokenProvider, String> {
        let mut parts = opts.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut map = HashMap::new();
        for part in parts {
            let Some((k, v)) = part.split_once('=').filter(|(_, v)| !v.contains('=')) else {
                return Err(format!(
                    "--auth-token: invalid option {part:?} (want key=value, e.g. sign-method=RS256)"
                ));
            };
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(format!("--auth-token: option {k:?} given twice"));
            }
        }
        match kind {
            "simple" => Ok(TokenProvider::Simple(SimpleTokens::new(simple_ttl))),
            "jwt" => JwtTokens::from_options(&map).map(TokenProvider::Jwt),
            other => Err(format!(
                "--auth-token: unknown token type {other:?} (oxcd supports \"simple\" and \"jwt\")"
            )),
        }
    }

    /// A random simple-token prefix (empty for JWT), drawn by the member that proposes an
    /// Authenticate, so every member assigns the same token.
    pub fn gen_prefix(&self) -> Result<String, AuthError> {
        match self {
            TokenProvider::Simple(_) => {
                let mut bytes = [0u8; PREFIX_LEN];
                getrandom::getrandom(&mut bytes)
                    .map_err(|e| AuthError::Hash(format!("no randomness: {e}")))?;
                // 52 letters: a byte modulo 52 is biased by under 1.2 %, harmless for a
                // name that is not a secret on its own (the index follows it).
                Ok(bytes
                    .iter()
                    .map(|b| LETTERS[*b as usize % LETTERS.len()] as char)
                    .collect())
            }
            TokenProvider::Jwt(_) => Ok(String::new()),
        }
    }

    /// Assigns a token to `username` (applied on every member for simple tokens).
    pub(crate) fn assign(
        &self,
        username: &str,
        revision: u64,
        prefix: &str,
        index: u64,
    ) -> Result<String, AuthError> {
        match self {
            TokenProvider::Simple(s) => Ok(s.assign(username, prefix, index)),
            TokenProvider::Jwt(j) => j.assign(username, revision),
        }
    }

    /// Who `token` belongs to; `revision` is the store's, used for simple tokens.
    pub(crate) fn info(&self, token: &str, revision: u64) -> Option<AuthInfo> {
        match self {
            TokenProvider::Simple(s) => s.info(token, revision),
            TokenProvider::Jwt(j) => j.info(token),
        }
    }

    pub(crate) fn enable(&self) {
        if let TokenProvider::Simple(s) = self {
            *s.enabled.lock() = true;
        }
    }

    pub(crate) fn disable(&self) {
        if let TokenProvider::Simple(s) = self {
            *s.enabled.lock() = false;
            s.tokens.lock().clear();
        }
    }

    pub(crate) fn invalidate_user(&self, username: &str) {
        if let TokenProvider::Simple(s) = self {
            s.tokens.lock().retain(|_, (u, _)| u != username);
        }
    }
}

/// Simple tokens: token -> (user, expiry).
pub struct SimpleTokens {
    ttl: Duration,
    enabled: Mutex<bool>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl SimpleTokens {
    /// No tokens yet; each lives `ttl` after its last use.
    pub fn new(ttl: Duration) -> SimpleTokens {
        let ttl = if ttl.is_zero() { DEFAULT_TTL } else { ttl };
        SimpleTokens {
            ttl,
            enabled: Mutex::new(false),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn assign(&self, username: &str, prefix: &str, index: u64) -> String {
        let token = format!("{prefix}.{index}");
        if *self.enabled.lock() {
            let now = Instant::now();
            let mut tokens = self.tokens.lock();
            // Expired tokens go when new ones come, so the map stays as large as the
            // tokens in use.
            tokens.retain(|_, (_, expiry)| *expiry > now);
            tokens.insert(token.clone(), (username.to_string(), now + self.ttl));
        }
        token
    }

    fn info(&self, token: &str, revision: u64) -> Option<AuthInfo> {
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        let (user, expiry) = tokens.get_mut(token)?;
        if *expiry <= now {
            tokens.remove(token);
            return None;
        }
        *expiry = now + self.ttl;
        Some(AuthInfo {
            username: user.clone(),
            revision,
        })
    }
}

/// etcd's JWT claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Signed JWTs.
pub struct JwtTokens {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

fn read_key(map: &HashMap<String, String>, opt: &str) -> Result<Option<Vec<u8>>, String> {
    match map.get(opt).filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(file) => std::fs::read(file)
            .map(Some)
            .map_err(|e| format!("--auth-token: cannot read {opt} {file:?}: {e}")),
    }
}

impl JwtTokens {
    fn from_options(map: &HashMap<String, String>) -> Result<JwtTokens, String> {
        for k in map.keys() {
            if !["sign-method", "pub-key", "priv-key", "ttl"].contains(&k.as_str()) {
                tracing::warn!(option = %k, "unknown JWT option");
            }
        }
        let ttl = match map.get("ttl").filter(|t| !t.is_empty()) {
            Some(t) => oxcd_godur::parse(t).map_err(|e| format!("--auth-token: ttl: {e}"))?,
            None => DEFAULT_TTL,
        };
        let method = map.get("sign-method").map(String::as_str).unwrap_or("");
        let algorithm = match method {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                return Err(format!(
                    "--auth-token: invalid sign-method {other:?} (oxcd supports HS256, HS384, \
                     HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                ))
            }
        };
        let private = read_key(map, "priv-key")?;
        let public = read_key(map, "pub-key")?;
        let bad = |what: &str, e: jsonwebtoken::errors::Error| {
            format!("--auth-token: {what} is not a valid {method} key: {e}")
        };
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret =
                    private.ok_or("--auth-token: HMAC signing needs priv-key (the secret)")?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            _ => {
                let public = public.ok_or(
                    "--auth-token: pub-key is required for RSA, ECDSA and EdDSA signing (the key that verifies tokens)",
                )?;
                let decoding = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&public),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&public),
                    _ => DecodingKey::from_rsa_pem(&public),
                }
                .map_err(|e| bad("pub-key", e))?;
                let encoding = match &private {
                    None => None,
                    Some(p) => Some(
                        match algorithm {
                            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(p),
                            Algorithm::EdDSA => EncodingKey::from_ed_pem(p),
                            _ => EncodingKey::from_rsa_pem(p),
                        }
                        .map_err(|e| bad("priv-key", e))?,
                    ),
                };
                (encoding, decoding)
            }
        };
        let tokens = JwtTokens {
            algorithm,
            encoding,
            decoding,
            ttl,
        };
        // A key pair that does not match would hand out tokens no member accepts.
        if tokens.encoding.is_some() {
            let probe = tokens
                .assign("", 0)
                .map_err(|e| format!("--auth-token: cannot sign with priv-key: {e}"))?;
            if tokens.info(&probe).is_none() {
                return Err("--auth-token: public and private keys don't match".into());
            }
        }
        Ok(tokens)
    }

    fn assign(&self, username: &str, revision: u64) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::VerifyOnly)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp: (now + self.ttl).as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::Hash(format!("cannot sign a JWT: {e}")))
    }

    fn info(&self, token: &str) -> Option<AuthInfo> {
        let mut v = Validation::new(self.algorithm);
        v.leeway = 0;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp"]);
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(t) => Some(AuthInfo {
                username: t.claims.username,
                revision: t.claims.revision,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "invalid JWT token");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_token_index_parses_etcds_form() {
        assert_eq!(simple_token_index("abcDEF.42"), Some(42));
        assert_eq!(simple_token_index("abc"), None);
        assert_eq!(simple_token_index("a.b.1"), None);
        assert_eq!(simple_token_index("a.x"), None);
    }

    #[test]
    fn simple_tokens_expire_and_extend_on_use() {
        let p = TokenProvider::Simple(SimpleTokens::new(Duration::from_millis(300)));
        p.enable();
        let t = p.assign("alice", 1, "pre", 7).unwrap();
        assert_eq!(t, "pre.7");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(
                p.info(&t, 5).unwrap().username,
                "alice",
                "use extends the token"
            );
        }
        std::thread::sleep(Duration::from_millis(400));
        assert!(p.info(&t, 5).is_none());
    }

    #[test]
    fn disable_and_user_changes_drop_simple_tokens() {
        let p = TokenProvider::Simple(SimpleTokens::new(DEFAULT_TTL));
        assert!(
            p.info(&p.assign("a", 1, "x", 1).unwrap(), 1).is_none(),
            "not while disabled"
        );
        p.enable();
        let a = p.assign("a", 1, "x", 2).unwrap();
        let b = p.assign("b", 1, "y", 3).unwrap();
        p.invalidate_user("a");
        assert!(p.info(&a, 1).is_none());
        assert!(p.info(&b, 1).is_some());
        p.disable();
        assert!(p.info(&b, 1).is_none());
        assert_eq!(p.gen_prefix().unwrap().len(), PREFIX_LEN);
    }

    #[test]
    fn hmac_jwt_round_trip_and_forgery() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret");
        std::fs::write(&key, b"sekrit").unwrap();
        let opts = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", key.display());
        let p = TokenProvider::from_options(&opts, DEFAULT_TTL).unwrap();
        let t = p.assign("bob", 9, "", 0).unwrap();
        let info = p.info(&t, 100).unwrap();
        assert_eq!((info.username.as_str(), info.revision), ("bob", 9));
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(p.info(&forged, 100).is_none());
        std::fs::write(&key, b"other").unwrap();
        let other = TokenProvider::from_options(&opts, DEFAULT_TTL).unwrap();
        assert!(other.info(&t, 100).is_none(), "another key rejects it");
    }

    #[test]
    fn bad_options_are_refused() {
        for opts in [
            "jwt,sign-method=XX256",
            "bogus",
            "simple,a",
            "jwt,ttl=1m,ttl=2m",
            "jwt,sign-method=RS256",
        ] {
            assert!(
                TokenProvider::from_options(opts, DEFAULT_TTL).is_err(),
                "{opts}"
            );
        }
        assert!(TokenProvider::from_options("simple", DEFAULT_TTL).is_ok());
    }
}
