//! `netdeploy tls`: the HTTPS certificate of the configuration, without a running server.

use clap::Subcommand;

use netdeploy::config::Config;

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Print the SHA-256 pin of the HTTPS certificate, `sha256:<hex>`, for
    /// `netdeploy-media --server-pin` and the agent's `netdeploy.pin`. With no `http.tls.cert`,
    /// the self-signed certificate is made now when the server has not made it yet, and the
    /// server then uses that one.
    Fingerprint,
}

pub fn tls(config: &Config, command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::Fingerprint => {
            println!("{}", fingerprint(config)?);
            Ok(())
        }
    }
}

/// The pin of the configuration's certificate (made when it is the self-signed one and there
/// is none yet).
pub fn fingerprint(config: &Config) -> anyhow::Result<netdeploy_wire::cert_pin::CertPin> {
    let Some(tls) = &config.http.tls else {
        anyhow::bail!("http.tls: HTTPS is off in this configuration (no [http.tls] table)");
    };
    let certificate =
        netdeploy::tls::certificate(tls, &config.data_dir, &netdeploy::tls::served_names(config))?;
    if certificate.made {
        eprintln!(
            "made the self-signed certificate {}",
            certificate.cert_path.display()
        );
    }
    Ok(certificate.pin)
}
