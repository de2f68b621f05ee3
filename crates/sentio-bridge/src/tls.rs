//! TLS to the MQTT broker (`bridge.mqtt.tls`): rustls with the ring provider, the CA from
//! `ca_file` or the system's roots, and a client certificate where the broker wants one.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sentio_config::MqttBridgeConfig;

/// The transport `config` asks for: `None` for plain TCP.
pub fn transport(config: &MqttBridgeConfig) -> anyhow::Result<Option<Transport>> {
    if !config.tls {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    if config.ca_file.as_os_str().is_empty() {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            bail!(
                "bridge.mqtt.tls: this system has no CA certificates to check the broker's \
                 with; set bridge.mqtt.ca_file to the broker's CA (PEM)"
            );
        }
    } else {
        for cert in certificates("bridge.mqtt.ca_file", &config.ca_file)? {
            roots.add(cert).with_context(|| {
                format!(
                    "bridge.mqtt.ca_file {}: a certificate rustls refuses",
                    config.ca_file.display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let client = if config.client_cert_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = certificates("bridge.mqtt.client_cert_file", &config.client_cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&config.client_key_file).map_err(|e| {
            anyhow::anyhow!(
                "bridge.mqtt.client_key_file {}: expected a PEM private key ({e})",
                config.client_key_file.display()
            )
        })?;
        builder.with_client_auth_cert(chain, key).context(
            "bridge.mqtt.client_cert_file and client_key_file: the key does not fit the certificate",
        )?
    };
    Ok(Some(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(client)))))
}

/// The PEM certificates of `path` (at least one), or an error naming `key`.
fn certificates(key: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!("{key} {}: expected PEM certificates ({e})", path.display())
        })?;
    if certs.is_empty() {
        bail!("{key} {}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}
