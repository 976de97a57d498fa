//! The XMPP certificate is renewed without a restart: SIGHUP reads the files again; new
//! connections get the new certificate, open streams carry on, and files that do not load
//! leave the old certificate in place (and say so in the log).

use std::path::Path;

use crate::common::spawn::Parley;
use crate::common::xmpp::{Addrs, Client, Via};
use crate::common::PASSWORD;

/// A fresh self-signed certificate for localhost: (certificate PEM, key PEM, certificate DER).
fn certificate() -> (String, String, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
        ck.cert.der().to_vec(),
    )
}

/// Writes the pair the way a renewal tool does: a new file renamed over the old one.
fn install(dir: &Path, cert: &str, key: &str) {
    for (name, pem) in [("key.pem", key), ("cert.pem", cert)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// A server whose XMPP certificate is `dir/cert.pem` and `dir/key.pem`, with JSON logs.
async fn serve_with_certificate(name: &str, cert: &str, key: &str) -> (Parley, Addrs, String) {
    let dir = crate::common::test_data_dir().join(format!("{name}-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    install(&dir, cert, key);
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut p = Parley::start(
        name,
        &[
            ("PARLEY_LOG_FORMAT", "json"),
            ("PARLEY_LOG", "info"),
            ("PARLEY_XMPP_CERT_FILE", cert_file.to_str().unwrap()),
            ("PARLEY_XMPP_KEY_FILE", key_file.to_str().unwrap()),
        ],
    )
    .await;
    let addrs = p.xmpp_addrs().await;
    let local = p.chat_user(&format!("{name}-user")).await;
    (p, addrs, local)
}

async fn served_certificate(addrs: Addrs) -> Vec<u8> {
    let c = Client::connect(addrs, Via::DirectTls).await;
    c.peer_certificate().expect("a TLS connection")
}

/// The stream still answers: an XMPP ping round trip.
async fn assert_alive(c: &mut Client, id: &str) {
    let r = c
        .iq(
            id,
            &format!("<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

#[tokio::test]
async fn sighup_gives_new_connections_the_new_certificate_and_keeps_open_streams() {
    let (a_cert, a_key, a_der) = certificate();
    let (b_cert, b_key, b_der) = certificate();
    let (mut p, addrs, local) = serve_with_certificate("tls-reload", &a_cert, &a_key).await;
    let dir = p
        .data
        .with_file_name(format!("tls-reload-certs-{}", std::process::id()));
    let mut open = Client::login(addrs, Via::DirectTls, &local, PASSWORD).await;
    assert_eq!(open.peer_certificate(), Some(a_der.clone()));
    assert_eq!(served_certificate(addrs).await, a_der);

    install(&dir, &b_cert, &b_key);
    p.signal(libc::SIGHUP);
    p.log_line("the reload", |v| {
        v["fields"]["message"] == "XMPP TLS certificate reloaded"
    })
    .await;

    assert_eq!(
        served_certificate(addrs).await,
        b_der,
        "new connections get B"
    );
    let mut starttls = Client::login(addrs, Via::StartTls, &local, PASSWORD).await;
    assert_eq!(starttls.peer_certificate(), Some(b_der), "STARTTLS too");
    assert_eq!(
        open.peer_certificate(),
        Some(a_der),
        "the open stream keeps A"
    );
    assert_alive(&mut open, "after-reload").await;
    assert_alive(&mut starttls, "new-stream").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn certificate_files_that_do_not_load_keep_the_old_certificate_and_log_an_error() {
    let (a_cert, a_key, a_der) = certificate();
    let (b_cert, _, _) = certificate();
    let (mut p, addrs, local) = serve_with_certificate("tls-bad-reload", &a_cert, &a_key).await;
    let dir = p
        .data
        .with_file_name(format!("tls-bad-reload-certs-{}", std::process::id()));
    let mut open = Client::login(addrs, Via::DirectTls, &local, PASSWORD).await;
    let broken = [
        ("not PEM", "not a certificate".to_owned(), a_key.clone()),
        ("empty", String::new(), a_key.clone()),
        ("another certificate's key", b_cert, a_key.clone()),
    ];
    for (what, cert, key) in broken {
        install(&dir, &cert, &key);
        p.signal(libc::SIGHUP);
        let line = p
            .log_line(what, |v| {
                v["fields"]["message"]
                    == "XMPP TLS certificate not reloaded; still using the previous one"
            })
            .await;
        assert_eq!(line["level"], "ERROR", "{what}: {line}");
        assert!(line["fields"]["error"].is_string(), "{what}: {line}");
        assert_eq!(served_certificate(addrs).await, a_der, "{what}: still A");
    }
    assert!(
        p.http.get("/healthz", None).await.status == 200,
        "still serving"
    );
    assert_alive(&mut open, "still-open").await;
    let _ = std::fs::remove_dir_all(dir);
}
