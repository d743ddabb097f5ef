use super::*;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA and a server certificate signed by it, as PEM files.
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let server_key = rcgen::KeyPair::generate().expect("key");
        let server = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .signed_by(&server_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
            .expect("server cert");
        let other_key = rcgen::KeyPair::generate().expect("key");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write");
        write("ca.pem", ca.pem());
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        write("other.key", other_key.serialize_pem());
        write(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n".into(),
        );
        write("empty.pem", "just text, no PEM sections\n".into());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self, cert: &str, key: &str, ca: Option<&str>) -> TlsFiles {
        TlsFiles {
            cert_file: self.path(cert),
            key_file: self.path(key),
            ca_file: ca.map(|c| self.path(c)),
            require_client_cert: ca.is_some(),
            use_identity_as_username: false,
        }
    }
}

#[test]
fn a_valid_chain_and_key_load_with_and_without_client_certificates() {
    let pki = Pki::new();
    server_config(&pki.files("server.pem", "server.key", None)).expect("server only");
    server_config(&pki.files("server.pem", "server.key", Some("ca.pem"))).expect("mutual TLS");
}

#[test]
fn every_bad_file_is_named_in_the_error() {
    let pki = Pki::new();
    let cases = [
        (pki.files("missing.pem", "server.key", None), "missing.pem"),
        (pki.files("garbage.pem", "server.key", None), "garbage.pem"),
        (pki.files("empty.pem", "server.key", None), "empty.pem"),
        (pki.files("server.pem", "empty.pem", None), "empty.pem"),
        (
            pki.files("server.pem", "server.key", Some("missing-ca.pem")),
            "missing-ca.pem",
        ),
        (pki.files("server.pem", "other.key", None), "other.key"),
    ];
    for (files, named) in cases {
        let Err(error) = server_config(&files) else {
            panic!("{files:?} should be refused");
        };
        let error = error.to_string();
        assert!(error.contains(named), "{error:?} should name {named}");
    }
}
