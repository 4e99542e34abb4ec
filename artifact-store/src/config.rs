//! The artifact store's configuration file.

pub use ick_api::server::ByteSize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ick_api::Secret;
use ick_api::auth::AuthConfig;
use ick_api::server::HttpConfig;
use serde::Deserialize;

/// `ick-artifact-store --config FILE`; see `deploy/config/artifact-store.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen. `body_limit` applies to JSON bodies (refs); blobs
    /// have `max_blob_size`.
    pub http: HttpConfig,
    /// How tokens are checked.
    pub auth: AuthConfig,
    /// Where blobs and refs live.
    pub storage: StorageConfig,
    /// The largest blob accepted (default 64 GiB); larger ones get 413.
    #[serde(default = "default_max_blob_size")]
    pub max_blob_size: ByteSize,
    /// Resumable upload sessions.
    #[serde(default)]
    pub uploads: UploadsConfig,
}

/// Where blobs and refs live: exactly one of the two backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// A local directory.
    #[serde(default)]
    pub local: Option<LocalConfig>,
    /// An S3-compatible bucket.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

/// A local directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The directory: `sha256/`, `refs/`, `uploads/`, `tmp/`.
    pub path: PathBuf,
}

/// The backend a config chooses.
#[derive(Debug, Clone, Copy)]
pub enum Storage<'a> {
    /// A local directory.
    Local(&'a LocalConfig),
    /// An S3-compatible bucket.
    S3(&'a S3Config),
}

impl StorageConfig {
    /// The chosen backend (checked at load: exactly one).
    pub fn chosen(&self) -> anyhow::Result<Storage<'_>> {
        match (&self.local, &self.s3) {
            (Some(local), None) => Ok(Storage::Local(local)),
            (None, Some(s3)) => Ok(Storage::S3(s3)),
            _ => anyhow::bail!("storage: give exactly one of local or s3"),
        }
    }
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph, Garage…).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket, which must exist.
    pub bucket: String,
    /// Keys start with this (default: none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The service URL for anything but AWS, e.g. `http://minio:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id; `ICK_ARTIFACT_STORE_S3_ACCESS_KEY_ID` overrides it.
    /// Without keys, the usual AWS sources (environment, instance role).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret key; `ICK_ARTIFACT_STORE_S3_SECRET_ACCESS_KEY` overrides it.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// A file holding the secret key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Allow a plain-HTTP endpoint (default false).
    #[serde(default)]
    pub allow_http: bool,
    /// Address buckets as `bucket.host` instead of `host/bucket` (default
    /// false, which every S3-compatible server understands).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// A local directory for uploads in progress: blobs are received and
    /// checked there before they go to the bucket.
    pub staging_dir: PathBuf,
    /// Size of the parts of multipart uploads (default 8 MiB, at least 5 MiB).
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
}

/// Upload sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// A session with no new bytes for this long is removed with its bytes
    /// (default 24 h).
    #[serde(with = "humantime_serde")]
    pub expire_after: Duration,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            expire_after: Duration::from_secs(24 * 3600),
        }
    }
}

fn default_max_blob_size() -> ByteSize {
    ByteSize(64 << 30)
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_part_size() -> ByteSize {
    ByteSize(8 << 20)
}

impl Config {
    /// Reads the file, applies environment overrides, and refuses what is
    /// half configured.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let mut config: Config = ick_api::server::load_yaml(path)?;
        config.apply_env()?;
        config.check()?;
        Ok(config)
    }

    fn apply_env(&mut self) -> anyhow::Result<()> {
        if let Some(s3) = &mut self.storage.s3 {
            if let Ok(id) = std::env::var("ICK_ARTIFACT_STORE_S3_ACCESS_KEY_ID")
                && !id.is_empty()
            {
                s3.access_key_id = Some(id);
            }
            s3.secret_access_key = ick_api::secret::resolve(
                "storage.s3.secret_access_key",
                s3.secret_access_key.as_ref(),
                s3.secret_access_key_file.as_deref(),
                "ICK_ARTIFACT_STORE_S3_SECRET_ACCESS_KEY",
            )?;
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        if let Storage::S3(s3) = self.storage.chosen()? {
            if s3.bucket.is_empty() {
                anyhow::bail!("storage.s3.bucket is empty");
            }
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                anyhow::bail!(
                    "storage.s3: give both access_key_id and secret_access_key (or neither, to use the AWS environment)"
                );
            }
            if s3.part_size.0 < 5 << 20 {
                anyhow::bail!("storage.s3.part_size must be at least 5 MiB (an S3 rule)");
            }
        }
        if self.uploads.expire_after < Duration::from_secs(1) {
            anyhow::bail!("uploads.expire_after must be at least 1s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/artifact-store.yaml");
        let config = Config::load(&path).expect("example config loads");
        assert!(matches!(config.storage.chosen(), Ok(Storage::Local(_))));
    }

    #[test]
    fn half_configured_s3_keys_are_refused() {
        let text = r#"
http: {listen: "127.0.0.1:0"}
auth: {issuer: "http://127.0.0.1:1"}
storage:
  s3: {bucket: b, staging_dir: /tmp/x, access_key_id: AKIA}
"#;
        let config: Config = serde_yaml::from_str(text).expect("parses");
        let err = config.check().expect_err("refused");
        assert!(
            err.to_string()
                .contains("both access_key_id and secret_access_key"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = r#"
http: {listen: "127.0.0.1:0"}
auth: {issuer: "http://127.0.0.1:1"}
storage: {local: {path: /x, colour: red}}
"#;
        assert!(serde_yaml::from_str::<Config>(text).is_err());
    }

    #[test]
    fn exactly_one_backend_is_required() {
        let text = r#"
http: {listen: "127.0.0.1:0"}
auth: {issuer: "http://127.0.0.1:1"}
storage: {}
"#;
        let config: Config = serde_yaml::from_str(text).expect("parses");
        let err = config.check().expect_err("refused");
        assert!(
            err.to_string().contains("exactly one of local or s3"),
            "{err}"
        );
    }
}
