//! The IDP's own metrics, beside the HTTP ones every service has: tokens
//! issued by grant, and failed authentications by what was guessed.

use ick_api::server::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// What the IDP counts as it happens.
#[derive(Clone, Default)]
pub struct Counters {
    issued: Family<GrantLabels, Counter>,
    failures: Family<KindLabels, Counter>,
}

impl Counters {
    /// The IDP's metrics, these among them.
    pub fn metrics(&self) -> Metrics {
        Metrics::new(|registry| {
            registry.register(
                "tokens_issued",
                "Token responses answered, by grant (client_credentials, \
                 authorization_code, refresh_token, device_code)",
                self.issued.clone(),
            );
            registry.register(
                "auth_failures",
                "Failed authentications, by what was presented (client: a client's \
                 secret; login: a password; user_code: a device code typed)",
                self.failures.clone(),
            );
        })
    }

    pub fn issued(&self, grant: &'static str) {
        self.issued.get_or_create(&GrantLabels { grant }).inc();
    }

    pub fn failed(&self, kind: &'static str) {
        self.failures.get_or_create(&KindLabels { kind }).inc();
    }
}
