//! OAuth2 and JOSE wire types shared by the IDP and its clients.

use serde::{Deserialize, Serialize};

use crate::scope::ScopeSet;

/// The media type of RFC 9068 access tokens, in the JWT `typ` header.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Discovery document path, relative to the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// JWKS path, relative to the issuer.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Token endpoint path, relative to the issuer.
pub const TOKEN_PATH: &str = "/token";

/// Authorization endpoint path (the browser login), relative to the issuer.
pub const AUTHORIZE_PATH: &str = "/authorize";

/// OpenID Connect UserInfo endpoint path, relative to the issuer.
pub const USERINFO_PATH: &str = "/userinfo";

/// RFC 7009 revocation endpoint path (logout), relative to the issuer.
pub const REVOKE_PATH: &str = "/revoke";

/// RFC 8628 device authorization endpoint path, relative to the issuer.
pub const DEVICE_AUTHORIZATION_PATH: &str = "/device_authorization";

/// Where a person enters a device's user code (RFC 8628 `verification_uri`),
/// relative to the issuer.
pub const DEVICE_PATH: &str = "/device";

/// The `grant_type` of the device authorization grant (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// RFC 8628 §3.2: the answer of the device authorization endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceAuthorizationResponse {
    /// What the device polls the token endpoint with (a secret).
    pub device_code: String,
    /// What the person types at `verification_uri`, e.g. `WDJB-MJHT`.
    pub user_code: String,
    /// Where the person goes, in any browser.
    pub verification_uri: String,
    /// The same with the user code in it, for a link or a QR code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    /// Seconds until both codes expire.
    pub expires_in: u64,
    /// Seconds the device waits between polls (RFC 8628 §3.5: add 5 on
    /// each `slow_down`).
    #[serde(default = "default_device_interval")]
    pub interval: u64,
}

fn default_device_interval() -> u64 {
    5
}

/// The `typ` of OpenID Connect ID tokens.
pub const ID_TOKEN_TYPE: &str = "JWT";

/// RFC 6749 §5.1: a successful token response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// For a person: the opaque token that gets the next access token
    /// (single use: each refresh answers a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// For a person who asked for the `openid` scope: who they are, signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// The claims of an OpenID Connect ID token that the IDP issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The IDP's issuer URL.
    pub iss: String,
    /// The user's stable id.
    pub sub: String,
    /// The client the person logged in through.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// When the person entered their password, seconds since the epoch.
    pub auth_time: i64,
    /// The `nonce` of the authorization request, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The client's id (`azp`, OpenID Connect Core §2).
    pub azp: String,
    /// Who the person is, by name and groups.
    #[serde(flatten)]
    pub person: UserClaims,
}

/// What the IDP says of a person, in ID tokens and at `/userinfo`
/// (OpenID Connect standard claims, and `groups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    /// The username.
    pub preferred_username: String,
    /// The display name.
    pub name: String,
    /// The email address (empty if none was given).
    pub email: String,
    /// The groups the user is in.
    pub groups: Vec<String>,
}

/// The answer of `GET /userinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfoResponse {
    /// The user's stable id, as in the ID token.
    pub sub: String,
    /// The rest.
    #[serde(flatten)]
    pub person: UserClaims,
}

/// RFC 6749 §5.2: an error from the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthErrorResponse {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, ...
    pub error: String,
    /// A sentence for the person reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// The claims of an Ick access token (RFC 9068 profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The IDP's issuer URL.
    pub iss: String,
    /// Whom the token speaks for: the client id.
    pub sub: String,
    /// Which services the token is for.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// A unique id for the token.
    pub jti: String,
    /// The OAuth2 client the token was issued to.
    pub client_id: String,
    /// That client's name when the token was issued, for people to read
    /// (`triggered by`); ids stay the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The scopes, space-separated.
    pub scope: String,
    /// For a client with `work:run`: the worker it is, as an admin set it
    /// on the client. The controller takes a worker's name and labels from
    /// here, never from the worker's own requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ick_worker: Option<WorkerIdentity>,
    /// For a token a person got by logging in: who they are, and the
    /// groups they were in when it was issued. What they may do to a
    /// project is decided from this and the project's members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ick_user: Option<UserIdentity>,
}

/// Who a person is, as the IDP knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIdentity {
    /// The user's unique name (`[a-z0-9][a-z0-9._-]*`).
    pub name: String,
    /// The groups the user is in.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Who a worker is: its name and the labels it may claim work with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerIdentity {
    /// The worker's unique name.
    pub name: String,
    /// Labels, e.g. `trusted`, `arch=amd64`.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl WorkerIdentity {
    /// Refuses a name or label that cannot be one; the error says why.
    pub fn check(&self) -> Result<(), String> {
        crate::work::check_worker(&self.name, &self.labels)
    }
}

/// The parts of the OpenID discovery document that Ick publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoveryDocument {
    /// The issuer URL, equal to the tokens' `iss`.
    pub issuer: String,
    /// Where to get tokens.
    pub token_endpoint: String,
    /// Where the public keys are.
    pub jwks_uri: String,
    /// Where people log in (the authorization-code grant).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// The OpenID Connect UserInfo endpoint.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// The RFC 7009 revocation endpoint (logout).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// The RFC 8628 device authorization endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// `authorization_code`, `refresh_token`, `client_credentials` and
    /// [`DEVICE_CODE_GRANT`].
    pub grant_types_supported: Vec<String>,
    /// `["code"]`.
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    /// `["S256"]`: PKCE is required, `plain` refused.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// `["public"]`: a user's `sub` is their id, the same for every client.
    #[serde(default)]
    pub subject_types_supported: Vec<String>,
    /// `["EdDSA"]`.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `client_secret_basic`, `client_secret_post` and `none` (public clients).
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Every scope the IDP can grant, and `openid`.
    pub scopes_supported: Vec<String>,
    /// The claims ID tokens and `/userinfo` carry.
    #[serde(default)]
    pub claims_supported: Vec<String>,
    /// Always `["EdDSA"]`.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One public key of the set (RFC 8037: `kty: OKP`, `crv: Ed25519`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type; `OKP` for Ed25519.
    pub kty: String,
    /// Curve; `Ed25519`.
    #[serde(default)]
    pub crv: Option<String>,
    /// The public key, base64url without padding.
    #[serde(default)]
    pub x: Option<String>,
    /// The key id that tokens name in their header.
    #[serde(default)]
    pub kid: Option<String>,
    /// `sig`.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// `EdDSA`.
    #[serde(default)]
    pub alg: Option<String>,
}

/// An IDP client as the admin API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client id used to get tokens.
    pub id: String,
    /// A unique name chosen by the admin.
    pub name: String,
    /// The scopes the client may ask for.
    pub scopes: ScopeSet,
    /// The audience of its tokens.
    pub audience: String,
    /// A disabled client gets no token.
    pub enabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The worker its tokens name (clients with `work:run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerIdentity>,
    /// Where the browser login may send people back with a code; matched
    /// exactly.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// A public client has no secret (a command line, a single-page app):
    /// it may only log people in, with PKCE.
    #[serde(default)]
    pub public: bool,
    /// It may log people in by the device grant (RFC 8628): a command
    /// line that shows a code to type into any browser.
    #[serde(default)]
    pub device: bool,
}

/// Body of `POST /clients`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// Unique name.
    pub name: String,
    /// Scopes the client may ask for.
    pub scopes: ScopeSet,
    /// Audience of its tokens; the IDP's default when absent.
    #[serde(default)]
    pub audience: Option<String>,
    /// For a worker (`work:run`): its name (default: the client's name).
    #[serde(default)]
    pub worker_name: Option<String>,
    /// For a worker: the labels it may claim work with (default none).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Where people logging in through it may be sent back (absolute
    /// `https` URLs, or `http` on a loopback address).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// No secret: it may only log people in (default false).
    #[serde(default)]
    pub public: bool,
    /// It may log people in by the device grant (default false).
    #[serde(default)]
    pub device: bool,
}

/// Body of `PATCH /clients/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    /// New scopes.
    #[serde(default)]
    pub scopes: Option<ScopeSet>,
    /// Enable or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A worker's new name.
    #[serde(default)]
    pub worker_name: Option<String>,
    /// A worker's new labels (replacing the old ones).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// New redirect URIs (replacing the old ones).
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
}

/// A client together with its secret: answered once, at creation or rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientWithSecret {
    /// The client.
    #[serde(flatten)]
    pub client: ClientInfo,
    /// The secret; the IDP keeps only its hash. None for a public client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}
