//! SCRAM (RFC 5802, RFC 7677) and PLAIN over SCRAM credentials.
//!
//! The server side of SASL `SCRAM-SHA-256` and `SCRAM-SHA-512` as Apache
//! Kafka implements it, and the check of a SASL `PLAIN` password against
//! the same stored credentials, so that a user has one credential however
//! the client logs in.
//!
//! Only the salted, hashed keys are ever stored: a leaked credential lets
//! nobody log in with SCRAM or PLAIN, it only allows an offline guess of
//! the password.

use std::fmt;
use std::mem;
use std::str;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's lowest accepted iteration count; it answers
/// `UNACCEPTABLE_CREDENTIAL` to an `AlterUserScramCredentials` below it.
pub const MIN_ITERATIONS: i32 = 4096;

/// Kafka's highest accepted iteration count: above it, every login would
/// cost the broker more CPU than a client should be able to ask for.
pub const MAX_ITERATIONS: i32 = 16384;

/// Salts this crate makes are as long as Kafka's own.
const SALT_LEN: usize = 32;

/// The iteration count shown for a user that does not exist; Kafka's
/// tools default to it, so it is the least conspicuous choice.
const MOCK_ITERATIONS: i32 = 4096;

/// A SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// See [`MIN_ITERATIONS`].
    pub const MIN_ITERATIONS: i32 = MIN_ITERATIONS;
    /// See [`MAX_ITERATIONS`].
    pub const MAX_ITERATIONS: i32 = MAX_ITERATIONS;

    /// The SASL mechanism name, as in `SaslHandshake`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism with this SASL name; names are case-sensitive, as in
    /// Kafka.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The id `AlterUserScramCredentials` and
    /// `DescribeUserScramCredentials` use (0 is Kafka's `UNKNOWN`).
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The mechanism with this Kafka id.
    pub fn from_kafka_type(kafka_type: i8) -> Option<Self> {
        match kafka_type {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Self::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's `Hi`, which is PBKDF2 with one output block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        // A non-positive count cannot come from a validated credential;
        // PBKDF2 treats 0 as 1, which is harmless where it cannot match.
        let rounds = u32::try_from(iterations).unwrap_or(0);
        match self {
            Self::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, rounds).to_vec()
            }
            Self::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, rounds).to_vec()
            }
        }
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC hashes or pads a key of any length, so this cannot fail.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of every length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What the broker stores for one user and one mechanism (RFC 5802
/// section 3): enough to verify a login, not enough to perform one.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScramCredential {
    /// The salt given to `Hi`.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// The iteration count given to `Hi`.
    pub iterations: i32,
}

impl ScramCredential {
    /// The credential for a password, as `kafka-configs --add-config
    /// 'SCRAM-SHA-256=[password=...]'` makes it.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: i32,
    ) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential for a password the client has already salted:
    /// `AlterUserScramCredentials` sends the salt and the salted password so
    /// that the password itself never reaches the broker.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: i32,
    ) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Self {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// A fresh salt from the operating system's random source.
    ///
    /// # Panics
    ///
    /// If the operating system has no random source: a predictable salt
    /// would silently weaken every credential made with it.
    pub fn new_random_salt() -> Vec<u8> {
        random_bytes(SALT_LEN).expect("the operating system's random source failed")
    }
}

impl fmt::Debug for ScramCredential {
    // The keys are password equivalents for an offline attack; they must
    // never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Whether `password` is the one `credential` was made from: how SASL
/// `PLAIN` logs in against SCRAM credentials.
pub fn verify_plain(
    mechanism: ScramMechanism,
    credential: &ScramCredential,
    password: &[u8],
) -> bool {
    let candidate = ScramCredential::from_password(
        mechanism,
        password,
        &credential.salt,
        credential.iterations,
    );
    candidate.stored_key.ct_eq(&credential.stored_key).into()
}

/// Why a SASL exchange failed. The texts never contain a password, a proof
/// or a key, since they may be logged or sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client sent something that is not a valid message.
    #[error("malformed SASL message: {0}")]
    Malformed(&'static str),
    /// The client asked for something valid that this broker does not do.
    #[error("unsupported SASL feature: {0}")]
    Unsupported(&'static str),
    /// Unknown user or wrong password: deliberately one variant, so that
    /// nobody can tell which users exist.
    #[error(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    )]
    AuthenticationFailed {
        /// The SASL mechanism name, as Kafka's message includes it.
        mechanism: &'static str,
    },
    /// A step of the exchange came before the previous one or twice.
    #[error("SASL message out of order: {0}")]
    OutOfOrder(&'static str),
    /// The operating system's random source failed.
    #[error("no random numbers available")]
    RandomUnavailable,
}

/// A SASL `PLAIN` message (RFC 4616).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage {
    /// The authorization id: empty, or the user name.
    pub authzid: String,
    /// The authentication id.
    pub username: String,
    /// The password, in clear.
    pub password: String,
}

impl fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Parses `[authzid] NUL authcid NUL passwd`.
pub fn parse_plain(message: &[u8]) -> Result<PlainMessage, ScramError> {
    let message = str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = message.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed("PLAIN needs exactly three fields"));
    };
    if username.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(ScramError::Malformed("empty password"));
    }
    check_authzid(authzid, username)?;
    Ok(PlainMessage {
        authzid: authzid.to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Kafka, like us, has no notion of one user acting for another.
fn check_authzid(authzid: &str, username: &str) -> Result<(), ScramError> {
    if authzid.is_empty() || authzid == username {
        Ok(())
    } else {
        Err(ScramError::Unsupported(
            "an authorization id other than the user name",
        ))
    }
}

/// The server side of one SCRAM exchange: `client_first`, then
/// `client_final`. Every failure ends the exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
    /// Set only by tests, which need a known nonce.
    fixed_nonce: Option<String>,
}

enum State {
    AwaitingFirst,
    AwaitingFinal(Box<Exchange>),
    Authenticated(String),
    Failed,
}

/// What the first step leaves for the second.
struct Exchange {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    credential: ScramCredential,
}

impl ScramServer {
    /// A new exchange with `mechanism`.
    pub fn new(mechanism: ScramMechanism) -> Self {
        Self {
            mechanism,
            state: State::AwaitingFirst,
            fixed_nonce: None,
        }
    }

    /// An exchange whose server nonce is `nonce` rather than random.
    #[cfg(test)]
    pub(crate) fn with_server_nonce(mechanism: ScramMechanism, nonce: &str) -> Self {
        Self {
            fixed_nonce: Some(nonce.to_owned()),
            ..Self::new(mechanism)
        }
    }

    /// The exchange's mechanism.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The user name, once (and only once) the exchange has succeeded: a
    /// name merely claimed by the client must never be mistaken for an
    /// authenticated one.
    pub fn username(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated(username) => Some(username),
            _ => None,
        }
    }

    /// Handles the client-first-message and returns the
    /// server-first-message. `lookup` finds the user's credential for this
    /// exchange's mechanism.
    ///
    /// An unknown user does not fail here but at [`Self::client_final`],
    /// exactly like a wrong password, so that the answers do not tell which
    /// users exist.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        match mem::replace(&mut self.state, State::Failed) {
            State::AwaitingFirst => {}
            other => {
                self.state = other;
                return Err(ScramError::OutOfOrder("client-first-message"));
            }
        }
        let message = str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let first = parse_client_first(message)?;
        let credential = match lookup(&first.username) {
            Some(credential) => credential,
            None => mock_credential(self.mechanism, &first.username)?,
        };
        let server_nonce = match self.fixed_nonce.take() {
            Some(nonce) => nonce,
            None => BASE64.encode(random_bytes(32)?),
        };
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::AwaitingFinal(Box::new(Exchange {
            username: first.username,
            gs2_header: first.gs2_header.to_owned(),
            client_first_bare: first.bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
            credential,
        }));
        Ok(server_first.into_bytes())
    }

    /// Handles the client-final-message and returns the
    /// server-final-message and the authenticated user name.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let exchange = match mem::replace(&mut self.state, State::Failed) {
            State::AwaitingFinal(exchange) => exchange,
            other => {
                self.state = other;
                return Err(ScramError::OutOfOrder("client-final-message"));
            }
        };
        let message = str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let last = parse_client_final(message)?;
        if last.channel_binding != exchange.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding differs from the GS2 header",
            ));
        }
        if last.nonce != exchange.nonce {
            return Err(ScramError::Malformed("nonce differs from the server's"));
        }
        let auth_message = format!(
            "{},{},{}",
            exchange.client_first_bare, exchange.server_first, last.without_proof
        );
        let credential = &exchange.credential;
        let signature = self
            .mechanism
            .hmac(&credential.stored_key, auth_message.as_bytes());
        let failed = ScramError::AuthenticationFailed {
            mechanism: self.mechanism.name(),
        };
        // The length is fixed by the mechanism, not by the user, so failing
        // early here reveals nothing.
        if last.proof.len() != signature.len() {
            return Err(failed);
        }
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(&signature)
            .map(|(proof, signature)| proof ^ signature)
            .collect();
        let valid: bool = self
            .mechanism
            .hash(&client_key)
            .ct_eq(&credential.stored_key)
            .into();
        if !valid {
            return Err(failed);
        }
        let server_signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", BASE64.encode(server_signature));
        self.state = State::Authenticated(exchange.username.clone());
        Ok((server_final.into_bytes(), exchange.username))
    }
}

impl fmt::Debug for ScramServer {
    // The exchange holds the user's keys; only the progress is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::AwaitingFirst => "awaiting client-first-message",
            State::AwaitingFinal(_) => "awaiting client-final-message",
            State::Authenticated(_) => "authenticated",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

struct ClientFirst<'a> {
    /// Up to and including the comma after the authzid: what `c=` repeats.
    gs2_header: &'a str,
    bare: &'a str,
    username: String,
    client_nonce: &'a str,
}

fn parse_client_first(message: &str) -> Result<ClientFirst<'_>, ScramError> {
    const NO_HEADER: ScramError = ScramError::Malformed("missing GS2 header");
    let (cbind_flag, rest) = message.split_once(',').ok_or(NO_HEADER)?;
    match cbind_flag {
        "n" => {}
        "y" => return Err(ScramError::Unsupported("channel binding")),
        flag if flag.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
        _ => return Err(ScramError::Malformed("invalid channel binding flag")),
    }
    let (authzid, bare) = rest.split_once(',').ok_or(NO_HEADER)?;
    let gs2_header = &message[..message.len() - bare.len()];

    let mut attributes = bare.split(',');
    let username = match attributes.next() {
        Some(reserved) if reserved.starts_with("m=") => {
            return Err(ScramError::Unsupported("mandatory extension"))
        }
        Some(name) => name
            .strip_prefix("n=")
            .ok_or(ScramError::Malformed("missing user name"))?,
        None => return Err(ScramError::Malformed("missing user name")),
    };
    let username = decode_saslname(username)?;
    if username.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    if !authzid.is_empty() {
        let authzid = authzid
            .strip_prefix("a=")
            .ok_or(ScramError::Malformed("invalid authorization id"))?;
        check_authzid(&decode_saslname(authzid)?, &username)?;
    }
    let client_nonce = attributes
        .next()
        .and_then(|nonce| nonce.strip_prefix("r="))
        .ok_or(ScramError::Malformed("missing nonce"))?;
    if !is_valid_nonce(client_nonce) {
        return Err(ScramError::Malformed("invalid nonce"));
    }
    attributes.try_for_each(check_extension)?;
    Ok(ClientFirst {
        gs2_header,
        bare,
        username,
        client_nonce,
    })
}

struct ClientFinal<'a> {
    without_proof: &'a str,
    channel_binding: Vec<u8>,
    nonce: &'a str,
    proof: Vec<u8>,
}

fn parse_client_final(message: &str) -> Result<ClientFinal<'_>, ScramError> {
    const NO_PROOF: ScramError = ScramError::Malformed("missing proof");
    // The proof is always last and base64 has no commas.
    let (without_proof, proof) = message.rsplit_once(',').ok_or(NO_PROOF)?;
    let proof = proof.strip_prefix("p=").ok_or(NO_PROOF)?;
    let mut attributes = without_proof.split(',');
    let channel_binding = attributes
        .next()
        .and_then(|binding| binding.strip_prefix("c="))
        .ok_or(ScramError::Malformed("missing channel binding"))?;
    let nonce = attributes
        .next()
        .and_then(|nonce| nonce.strip_prefix("r="))
        .ok_or(ScramError::Malformed("missing nonce"))?;
    attributes.try_for_each(check_extension)?;
    Ok(ClientFinal {
        without_proof,
        channel_binding: BASE64
            .decode(channel_binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?,
        nonce,
        proof: BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?,
    })
}

/// Kafka's only extension is `tokenauth`, for delegation tokens, which we
/// do not have; other well-formed extensions are ignored, as Kafka does.
fn check_extension(extension: &str) -> Result<(), ScramError> {
    let (key, value) = extension
        .split_once('=')
        .ok_or(ScramError::Malformed("invalid extension"))?;
    if key.is_empty()
        || !key.bytes().all(|b| b.is_ascii_alphanumeric())
        || !value.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(ScramError::Malformed("invalid extension"));
    }
    if key == "tokenauth" {
        return Err(ScramError::Unsupported("delegation tokens"));
    }
    Ok(())
}

/// RFC 5802's `printable`: the comma is excluded by the split already.
fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Undoes RFC 5802's escaping of `,` and `=` in a `saslname`.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some((plain, escaped)) = rest.split_once('=') {
        decoded.push_str(plain);
        let (replacement, after) = if let Some(after) = escaped.strip_prefix("2C") {
            (',', after)
        } else if let Some(after) = escaped.strip_prefix("3D") {
            ('=', after)
        } else {
            return Err(ScramError::Malformed("invalid escape in user name"));
        };
        decoded.push(replacement);
        rest = after;
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// A credential for a user that does not exist. Its salt is derived from a
/// per-process secret and the name, so that asking twice for the same
/// unknown user shows the same salt, as for a real one; its keys match no
/// password.
fn mock_credential(
    mechanism: ScramMechanism,
    username: &str,
) -> Result<ScramCredential, ScramError> {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    let secret = match SECRET.get() {
        Some(secret) => secret,
        None => {
            let fresh = random_bytes(32)?;
            SECRET.get_or_init(|| fresh)
        }
    };
    let derive = |label: &str| mechanism.hmac(secret, format!("{label}\0{username}").as_bytes());
    let mut salt = derive("salt");
    salt.truncate(SALT_LEN);
    Ok(ScramCredential {
        salt,
        stored_key: derive("stored key"),
        server_key: derive("server key"),
        iterations: MOCK_ITERATIONS,
    })
}

fn random_bytes(len: usize) -> Result<Vec<u8>, ScramError> {
    let mut bytes = vec![0; len];
    getrandom::getrandom(&mut bytes).map_err(|_| ScramError::RandomUnavailable)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

    fn rfc_credential() -> ScramCredential {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", &salt, 4096)
    }

    /// A server that has answered the RFC 7677 client-first-message.
    fn rfc_server_after_first() -> ScramServer {
        let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, RFC_SERVER_NONCE);
        server
            .client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential()))
            .unwrap();
        server
    }

    fn rfc_final_with(without_proof: &str, proof: &str) -> Result<(Vec<u8>, String), ScramError> {
        rfc_server_after_first().client_final(format!("{without_proof},p={proof}").as_bytes())
    }

    fn first_error(message: &[u8]) -> ScramError {
        ScramServer::new(ScramMechanism::Sha256)
            .client_first(message, |_| Some(rfc_credential()))
            .unwrap_err()
    }

    /// The client side, written from RFC 5802 independently of the server's
    /// state machine; returns the client-final-message and the
    /// server-final-message it expects.
    fn client_final_for(
        mechanism: ScramMechanism,
        password: &[u8],
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, String) {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in server_first.split(',') {
            let (key, value) = attribute.split_once('=').unwrap();
            match key {
                "r" => nonce = Some(value),
                "s" => salt = Some(BASE64.decode(value).unwrap()),
                "i" => iterations = Some(value.parse::<u32>().unwrap()),
                _ => panic!("unexpected attribute {key}"),
            }
        }
        let (nonce, salt, iterations) = (nonce.unwrap(), salt.unwrap(), iterations.unwrap());
        let mut salted = vec![0; mechanism.hash(b"").len()];
        match mechanism {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut salted)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations, &mut salted)
            }
        }
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let expected_server_final = format!(
            "v={}",
            BASE64.encode(mechanism.hmac(&server_key, auth_message.as_bytes()))
        );
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            expected_server_final,
        )
    }

    /// A whole SCRAM-SHA-512 login of `username` with `password` against a
    /// broker that knows only alice, whose password is "wonderland".
    fn sha512_login(username: &str, password: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let mechanism = ScramMechanism::Sha512;
        let alice = ScramCredential::from_password(
            mechanism,
            b"wonderland",
            &ScramCredential::new_random_salt(),
            8192,
        );
        let mut server = ScramServer::new(mechanism);
        let bare = format!("n={username},r=fyko+d2lbbFgONRv9qkxdawL");
        let server_first = server
            .client_first(format!("n,,{bare}").as_bytes(), |name| {
                (name == "alice").then(|| alice.clone())
            })
            .unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
        let (client_final, expected) = client_final_for(mechanism, password, &bare, &server_first);
        let result = server.client_final(client_final.as_bytes());
        if let Ok((server_final, name)) = &result {
            assert_eq!(String::from_utf8(server_final.clone()).unwrap(), expected);
            assert_eq!(server.username(), Some(name.as_str()));
        } else {
            assert_eq!(server.username(), None);
        }
        result
    }

    #[test]
    fn rfc7677_sha256_test_vector() {
        let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, RFC_SERVER_NONCE);
        let mut looked_up = None;
        let server_first = server
            .client_first(RFC_CLIENT_FIRST.as_bytes(), |name| {
                looked_up = Some(name.to_owned());
                Some(rfc_credential())
            })
            .unwrap();
        assert_eq!(looked_up.as_deref(), Some("user"));
        assert_eq!(server_first, RFC_SERVER_FIRST.as_bytes());
        assert_eq!(server.username(), None);
        let (server_final, username) = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
        assert_eq!(username, "user");
        assert_eq!(server.username(), Some("user"));
    }

    #[test]
    fn the_test_client_agrees_with_the_rfc() {
        let (client_final, server_final) = client_final_for(
            ScramMechanism::Sha256,
            b"pencil",
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            RFC_SERVER_FIRST,
        );
        assert_eq!(client_final, RFC_CLIENT_FINAL);
        assert_eq!(server_final, RFC_SERVER_FINAL);
    }

    #[test]
    fn salted_password_credential_equals_password_credential() {
        let salt = ScramCredential::new_random_salt();
        assert_eq!(salt.len(), 32);
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let salted = mechanism.salted_password(b"secret", &salt, 4096);
            assert_eq!(
                ScramCredential::from_salted_password(mechanism, &salted, &salt, 4096),
                ScramCredential::from_password(mechanism, b"secret", &salt, 4096)
            );
        }
        assert_ne!(salt, ScramCredential::new_random_salt());
    }

    #[test]
    fn sha512_exchange_succeeds_with_the_right_password() {
        let (_, username) = sha512_login("alice", b"wonderland").unwrap();
        assert_eq!(username, "alice");
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let expected = ScramError::AuthenticationFailed {
            mechanism: "SCRAM-SHA-512",
        };
        assert_eq!(sha512_login("alice", b"Wonderland"), Err(expected.clone()));
        assert_eq!(sha512_login("bob", b"wonderland"), Err(expected.clone()));
        assert_eq!(
            expected.to_string(),
            "Authentication failed during authentication due to invalid credentials \
             with SASL mechanism SCRAM-SHA-512"
        );
    }

    #[test]
    fn unknown_user_looks_like_a_real_one() {
        let first = |name: &str, nonce: &str| {
            let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, nonce);
            let message = format!("n,,n={name},r=abc");
            let server_first = server.client_first(message.as_bytes(), |_| None).unwrap();
            String::from_utf8(server_first).unwrap()
        };
        let bob = first("bob", "x");
        assert_eq!(bob, first("bob", "x"), "same salt every time");
        assert_ne!(bob, first("carol", "x"));
        let salt = bob.split(",s=").nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(BASE64.decode(salt).unwrap().len(), 32);
        assert!(bob.ends_with(",i=4096"));
    }

    #[test]
    fn server_nonce_is_random_and_printable() {
        let nonce = || {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            let first = server
                .client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential()))
                .unwrap();
            let first = String::from_utf8(first).unwrap();
            first.split(',').next().unwrap().to_owned()
        };
        let (one, two) = (nonce(), nonce());
        assert_ne!(one, two);
        let server_part = one.strip_prefix("r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert!(server_part.len() >= 32);
        assert!(is_valid_nonce(server_part));
    }

    #[test]
    fn garbage_and_invalid_utf8_are_malformed() {
        for message in [
            &b""[..],
            b"garbage",
            b"n,",
            b"x,,n=user,r=abc",
            b"\xff\xfe,,n=user,r=a",
        ] {
            assert!(
                matches!(first_error(message), ScramError::Malformed(_)),
                "{message:?}"
            );
        }
        let error = rfc_server_after_first()
            .client_final(b"c=biws,r=\xff,p=AAAA")
            .unwrap_err();
        assert_eq!(error, ScramError::Malformed("not UTF-8"));
        assert!(matches!(
            rfc_server_after_first()
                .client_final(b"\x00\x01garbage")
                .unwrap_err(),
            ScramError::Malformed(_)
        ));
    }

    #[test]
    fn missing_attributes_are_malformed() {
        for message in [
            "n,,r=abc",
            "n,,n=user",
            "n,,n=,r=abc",
            "n,,n=user,r=",
            "n,,n=user,x=abc",
            "n,,user,r=abc",
            "n,user,n=user,r=abc",
            "n,,n=user,r=abc,=1",
            "n,,n=user,r=abc,novalue",
        ] {
            assert!(
                matches!(first_error(message.as_bytes()), ScramError::Malformed(_)),
                "{message}"
            );
        }
        for message in [
            format!("r={RFC_NONCE},p=AAAA"),
            "c=biws,p=AAAA".to_owned(),
            format!("c=biws,r={RFC_NONCE}"),
            format!("c=biws,r={RFC_NONCE},p"),
            String::new(),
        ] {
            assert!(
                matches!(
                    rfc_server_after_first().client_final(message.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{message}"
            );
        }
    }

    #[test]
    fn nonce_must_be_printable() {
        let error = first_error("n,,n=user,r=ab\u{7f}c".as_bytes());
        assert_eq!(error, ScramError::Malformed("invalid nonce"));
        let error = first_error("n,,n=user,r=ab c".as_bytes());
        assert_eq!(error, ScramError::Malformed("invalid nonce"));
    }

    #[test]
    fn wrong_nonce_in_final_is_rejected() {
        let proof = RFC_CLIENT_FINAL.rsplit_once(",p=").unwrap().1;
        let error = rfc_final_with("c=biws,r=rOprNGfwEbeRWgbNEkqO", proof).unwrap_err();
        assert_eq!(
            error,
            ScramError::Malformed("nonce differs from the server's")
        );
        let error = rfc_final_with(&format!("c=biws,r={RFC_NONCE}x"), proof).unwrap_err();
        assert_eq!(
            error,
            ScramError::Malformed("nonce differs from the server's")
        );
    }

    #[test]
    fn wrong_channel_binding_in_final_is_rejected() {
        let proof = RFC_CLIENT_FINAL.rsplit_once(",p=").unwrap().1;
        // "y,," and "n,a=user," are valid headers, but not the one sent.
        for binding in ["eSws", "bixhPXVzZXIs", "biw="] {
            let error = rfc_final_with(&format!("c={binding},r={RFC_NONCE}"), proof).unwrap_err();
            assert!(matches!(error, ScramError::Malformed(_)), "{binding}");
        }
        let error = rfc_final_with(&format!("c=b!ws,r={RFC_NONCE}"), proof).unwrap_err();
        assert_eq!(
            error,
            ScramError::Malformed("channel binding is not base64")
        );
    }

    #[test]
    fn channel_binding_matches_an_authzid_header() {
        let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, "srv");
        server
            .client_first(b"n,a=user,n=user,r=abc", |_| Some(rfc_credential()))
            .unwrap();
        let error = server.client_final(b"c=biws,r=abcsrv,p=AAAA").unwrap_err();
        assert_eq!(
            error,
            ScramError::Malformed("channel binding differs from the GS2 header")
        );
    }

    #[test]
    fn bad_or_short_proofs_fail_without_panicking() {
        let without_proof = format!("c=biws,r={RFC_NONCE}");
        assert_eq!(
            rfc_final_with(&without_proof, "not base64!").unwrap_err(),
            ScramError::Malformed("proof is not base64")
        );
        let failed = ScramError::AuthenticationFailed {
            mechanism: "SCRAM-SHA-256",
        };
        for proof in [
            String::new(),
            BASE64.encode([0u8; 31]),
            BASE64.encode([0u8; 33]),
            BASE64.encode([0u8; 64]),
        ] {
            assert_eq!(
                rfc_final_with(&without_proof, &proof),
                Err(failed.clone()),
                "{proof}"
            );
        }
        // Right length, one bit off.
        let mut proof = BASE64
            .decode(RFC_CLIENT_FINAL.rsplit_once(",p=").unwrap().1)
            .unwrap();
        proof[0] ^= 1;
        assert_eq!(
            rfc_final_with(&without_proof, &BASE64.encode(proof)),
            Err(failed)
        );
    }

    #[test]
    fn steps_out_of_order_are_errors() {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfOrder(_))
        ));
        // The premature call does not spoil a correct exchange.
        let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, RFC_SERVER_NONCE);
        assert!(server.client_final(RFC_CLIENT_FINAL.as_bytes()).is_err());
        server
            .client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential()))
            .unwrap();
        assert!(matches!(
            server.client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential())),
            Err(ScramError::OutOfOrder(_))
        ));
        server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfOrder(_))
        ));
        assert!(matches!(
            server.client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential())),
            Err(ScramError::OutOfOrder(_))
        ));
        assert_eq!(server.username(), Some("user"), "still authenticated");
    }

    #[test]
    fn a_failure_ends_the_exchange() {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert!(server.client_first(b"garbage", |_| None).is_err());
        assert!(matches!(
            server.client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential())),
            Err(ScramError::OutOfOrder(_))
        ));
        let mut server = rfc_server_after_first();
        assert!(server.client_final(b"c=biws,r=x,p=AAAA").is_err());
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfOrder(_))
        ));
        assert_eq!(server.username(), None);
    }

    #[test]
    fn user_names_are_unescaped() {
        let mut looked_up = None;
        ScramServer::new(ScramMechanism::Sha256)
            .client_first(b"n,,n=a=2Cb=3Dc=3D=2C,r=abc", |name| {
                looked_up = Some(name.to_owned());
                None
            })
            .unwrap();
        assert_eq!(looked_up.as_deref(), Some("a,b=c=,"));
        assert_eq!(decode_saslname("plain").unwrap(), "plain");
        assert_eq!(decode_saslname("=3D2C").unwrap(), "=2C");
        for name in ["a=2c", "a=", "a=3", "=41", "a=3Db=", "=="] {
            assert_eq!(
                decode_saslname(name),
                Err(ScramError::Malformed("invalid escape in user name")),
                "{name}"
            );
        }
        assert_eq!(
            first_error(b"n,,n=us=er,r=abc"),
            ScramError::Malformed("invalid escape in user name")
        );
    }

    #[test]
    fn authzid_must_be_the_user_name() {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        server
            .client_first(b"n,a=us=2Cer,n=us=2Cer,r=abc", |_| None)
            .unwrap();
        assert!(matches!(
            first_error(b"n,a=admin,n=user,r=abc"),
            ScramError::Unsupported(_)
        ));
        assert!(matches!(
            first_error(b"n,admin,n=user,r=abc"),
            ScramError::Malformed(_)
        ));
    }

    #[test]
    fn channel_binding_and_extensions_are_unsupported() {
        for message in [
            "y,,n=user,r=abc",
            "p=tls-unique,,n=user,r=abc",
            "p=tls-server-end-point,a=user,n=user,r=abc",
        ] {
            assert_eq!(
                first_error(message.as_bytes()),
                ScramError::Unsupported("channel binding"),
                "{message}"
            );
        }
        assert_eq!(
            first_error(b"n,,m=ext,n=user,r=abc"),
            ScramError::Unsupported("mandatory extension")
        );
        assert_eq!(
            first_error(b"n,,n=user,r=abc,tokenauth=true"),
            ScramError::Unsupported("delegation tokens")
        );
        // Kafka ignores extensions it does not know.
        ScramServer::new(ScramMechanism::Sha256)
            .client_first(b"n,,n=user,r=abc,foo=bar", |_| None)
            .unwrap();
    }

    #[test]
    fn plain_messages_parse() {
        let message = parse_plain(b"\0alice\0s3cret").unwrap();
        assert_eq!(
            message,
            PlainMessage {
                authzid: String::new(),
                username: "alice".to_owned(),
                password: "s3cret".to_owned(),
            }
        );
        let message = parse_plain(b"alice\0alice\0pass\xc3\xa9").unwrap();
        assert_eq!(message.authzid, "alice");
        assert_eq!(message.password, "pass\u{e9}");
    }

    #[test]
    fn bad_plain_messages_are_rejected() {
        for message in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0alice\0pw\0",
            b"\0\0pw",
            b"\0alice\0",
            b"\0al\xffice\0pw",
        ] {
            assert!(
                matches!(parse_plain(message), Err(ScramError::Malformed(_))),
                "{message:?}"
            );
        }
        assert!(matches!(
            parse_plain(b"admin\0alice\0pw"),
            Err(ScramError::Unsupported(_))
        ));
    }

    #[test]
    fn verify_plain_checks_the_password() {
        let salt = ScramCredential::new_random_salt();
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let credential = ScramCredential::from_password(mechanism, b"s3cret", &salt, 4096);
            assert!(verify_plain(mechanism, &credential, b"s3cret"));
            assert!(!verify_plain(mechanism, &credential, b"s3cret "));
            assert!(!verify_plain(mechanism, &credential, b""));
        }
        let sha256 = ScramCredential::from_password(ScramMechanism::Sha256, b"s3cret", &salt, 4096);
        assert!(!verify_plain(ScramMechanism::Sha512, &sha256, b"s3cret"));
        assert!(verify_plain(
            ScramMechanism::Sha256,
            &rfc_credential(),
            b"pencil"
        ));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let credential = rfc_credential();
        let debug = format!("{credential:?} {credential:#?}");
        for secret in [
            &credential.stored_key,
            &credential.server_key,
            &credential.salt,
        ] {
            assert!(!debug.contains(&format!("{secret:?}")));
            assert!(!debug.contains(&BASE64.encode(secret)));
        }
        assert!(debug.contains("4096"));
        assert!(!debug.contains("stored_key") && !debug.contains("server_key"));

        let message = parse_plain(b"\0alice\0hunter2").unwrap();
        let debug = format!("{message:?} {message:#?}");
        assert!(debug.contains("alice"));
        assert!(!debug.contains("hunter2"));

        let debug = format!("{:?}", rfc_server_after_first());
        assert!(!debug.contains(&format!("{:?}", credential.stored_key)));
        assert!(!debug.contains(&format!("{:?}", credential.server_key)));
        assert!(debug.contains("awaiting client-final-message"));
    }

    #[test]
    fn mechanism_names_and_ids() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            assert_eq!(ScramMechanism::from_name(mechanism.name()), Some(mechanism));
            assert_eq!(
                ScramMechanism::from_kafka_type(mechanism.kafka_type()),
                Some(mechanism)
            );
            assert_eq!(mechanism.to_string(), mechanism.name());
        }
        assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
        assert_eq!(ScramMechanism::Sha512.name(), "SCRAM-SHA-512");
        assert_eq!(ScramMechanism::Sha256.kafka_type(), 1);
        assert_eq!(ScramMechanism::Sha512.kafka_type(), 2);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_name("PLAIN"), None);
        assert_eq!(ScramMechanism::from_kafka_type(0), None);
        assert_eq!(ScramMechanism::from_kafka_type(3), None);
        assert_eq!((MIN_ITERATIONS, MAX_ITERATIONS), (4096, 16384));
    }
}
