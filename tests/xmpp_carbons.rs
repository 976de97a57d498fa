//! XEP-0280 Message Carbons for ordinary XMPP clients, over real sockets. A connection that
//! enabled carbons *and* announced XEP-0115 entity capabilities (every mainstream client does;
//! the ConnectyCube SDK never does) gets a `received` carbon of a message addressed to another
//! of its user's resources; a message to the bare JID already reaches every resource and is
//! not copied again. Only `chat`, and `normal` with a body, are copied, never one marked
//! `<private/>` or `<no-copy/>`. The SDK's side (sent carbons only) is in `xmpp_core`.

use std::time::Duration;

use parley::xmpp::stream::Element;

use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";

/// Logs in as `local/resource` and enables carbons; with `caps`, goes online announcing entity
/// capabilities as a standard client does (the server's caps query is left unanswered: only
/// the announcement matters here).
async fn connect(srv: &TestServer, local: &str, resource: &str, caps: bool) -> Client {
    let mut c = Client::login_as(srv.xmpp, Via::Tcp, local, PASSWORD, Some(resource)).await;
    c.carbons_online(caps).await;
    c
}

/// A standard client of `local` on `resource`: carbons enabled, caps announced.
async fn standard(srv: &TestServer, local: &str, resource: &str) -> Client {
    connect(srv, local, resource, true).await
}

/// Sends `xml` from `c`, then a ping round trip: by its answer the server has finished with
/// the message (a session handles its stanzas in order), carbons included.
async fn send_and_settle(c: &mut Client, xml: &str) {
    c.send_raw(xml).await;
    c.iq(
        "settled",
        "<iq type='get' id='settled'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
}

/// The messages `c` has been sent (and no others arrive within a short wait).
async fn messages(c: &mut Client) -> Vec<Element> {
    c.patience = Duration::from_millis(400);
    let mut out = Vec::new();
    while let Some(e) = c.try_next().await {
        if e.name == "message" {
            out.push(e);
        }
    }
    out
}

/// The message a `received` carbon forwards.
fn received(carbon: &Element) -> Option<&Element> {
    carbon
        .child("received", CARBONS)?
        .child("forwarded", FORWARD)?
        .child("message", "jabber:client")
}

#[tokio::test]
async fn a_message_to_a_full_jid_is_copied_as_received_to_the_users_other_standard_clients() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_rc").await;
    let (bob, _) = srv.chat_user("bob_rc").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!("<message to='{alice}@localhost/phone' type='chat' id='rc1'><body>to your phone</body></message>"),
    )
    .await;
    let on_phone = messages(&mut phone).await;
    assert_eq!(on_phone.len(), 1, "{on_phone:?}");
    assert_eq!(on_phone[0].attr("id"), Some("rc1"));
    assert!(
        received(&on_phone[0]).is_none(),
        "the original, not a carbon"
    );
    let on_desk = messages(&mut desk).await;
    assert_eq!(on_desk.len(), 1, "{on_desk:?}");
    let carbon = &on_desk[0];
    assert_eq!(
        carbon.attr("from"),
        Some(format!("{alice}@localhost").as_str())
    );
    assert_eq!(carbon.attr("to"), Some(desk.jid.as_str()));
    let original = received(carbon).expect("a received carbon");
    assert_eq!(original.attr("id"), Some("rc1"));
    assert_eq!(original.attr("from"), Some(b.jid.as_str()));
    assert_eq!(original.attr("to"), Some(phone.jid.as_str()));
    srv.stop().await;
}

#[tokio::test]
async fn a_connection_that_announced_no_caps_gets_no_received_carbons() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_nocaps").await;
    let (bob, _) = srv.chat_user("bob_nocaps").await;
    // The ConnectyCube SDK: carbons enabled, a presence without caps.
    let mut sdk = connect(&srv, &alice, "sdk", false).await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!(
            "<message to='{alice}@localhost/phone' type='chat' id='nc1'><body>x</body></message>"
        ),
    )
    .await;
    assert_eq!(messages(&mut phone).await.len(), 1);
    assert_eq!(messages(&mut sdk).await, Vec::<Element>::new());
    srv.stop().await;
}

#[tokio::test]
async fn a_connection_that_did_not_enable_carbons_gets_no_received_carbons() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_nocc").await;
    let (bob, _) = srv.chat_user("bob_nocc").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let r = desk
        .iq(
            "off",
            "<iq type='set' id='off'><disable xmlns='urn:xmpp:carbons:2'/></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!(
            "<message to='{alice}@localhost/phone' type='chat' id='dc1'><body>x</body></message>"
        ),
    )
    .await;
    assert_eq!(messages(&mut phone).await.len(), 1);
    assert_eq!(messages(&mut desk).await, Vec::<Element>::new());
    srv.stop().await;
}

#[tokio::test]
async fn a_message_to_the_bare_jid_reaches_every_resource_once_and_is_not_carbon_copied() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_bare").await;
    let (bob, _) = srv.chat_user("bob_bare").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!("<message to='{alice}@localhost' type='chat' id='bj1'><body>x</body></message>"),
    )
    .await;
    for c in [&mut desk, &mut phone] {
        let got = messages(c).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].attr("id"), Some("bj1"));
        assert!(received(&got[0]).is_none());
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_message_to_a_resource_that_is_gone_reaches_every_resource_without_carbons() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_gone").await;
    let (bob, _) = srv.chat_user("bob_gone").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!(
            "<message to='{alice}@localhost/laptop' type='chat' id='g1'><body>x</body></message>"
        ),
    )
    .await;
    for c in [&mut desk, &mut phone] {
        let got = messages(c).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(received(&got[0]).is_none());
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_message_marked_private_is_not_carbon_copied() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_priv").await;
    let (bob, _) = srv.chat_user("bob_priv").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!(
            "<message to='{alice}@localhost/phone' type='chat' id='p1'><body>x</body>\
             <private xmlns='urn:xmpp:carbons:2'/></message>"
        ),
    )
    .await;
    assert_eq!(messages(&mut phone).await.len(), 1);
    assert_eq!(messages(&mut desk).await, Vec::<Element>::new());
    srv.stop().await;
}

#[tokio::test]
async fn a_message_hinted_no_copy_is_not_carbon_copied() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_nocopy").await;
    let (bob, _) = srv.chat_user("bob_nocopy").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!(
            "<message to='{alice}@localhost/phone' type='chat' id='n1'><body>x</body>\
             <no-copy xmlns='urn:xmpp:hints'/></message>"
        ),
    )
    .await;
    assert_eq!(messages(&mut phone).await.len(), 1);
    assert_eq!(messages(&mut desk).await, Vec::<Element>::new());
    srv.stop().await;
}

#[tokio::test]
async fn a_normal_message_with_a_body_is_carbon_copied() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_normal").await;
    let (bob, _) = srv.chat_user("bob_normal").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let _phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!("<message to='{alice}@localhost/phone' id='nm1'><body>no type</body></message>"),
    )
    .await;
    let got = messages(&mut desk).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(received(&got[0]).and_then(|m| m.attr("id")), Some("nm1"));
    srv.stop().await;
}

#[tokio::test]
async fn a_normal_message_without_a_body_or_a_headline_is_not_carbon_copied() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_hl").await;
    let (bob, _) = srv.chat_user("bob_hl").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    send_and_settle(
        &mut b,
        &format!(
            "<message to='{alice}@localhost/phone' type='normal' id='e1'>\
             <subject>no body</subject></message>"
        ),
    )
    .await;
    send_and_settle(
        &mut b,
        &format!("<message to='{alice}@localhost/phone' type='headline' id='h1'><body>news</body></message>"),
    )
    .await;
    assert_eq!(messages(&mut phone).await.len(), 2);
    assert_eq!(messages(&mut desk).await, Vec::<Element>::new());
    srv.stop().await;
}

#[tokio::test]
async fn a_message_to_ones_own_other_resource_gets_sent_carbons_only() {
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_self").await;
    let mut desk = standard(&srv, &alice, "desk").await;
    let mut phone = standard(&srv, &alice, "phone").await;
    let mut laptop = standard(&srv, &alice, "laptop").await;
    send_and_settle(
        &mut desk,
        &format!(
            "<message to='{alice}@localhost/phone' type='chat' id='s1'><body>note</body></message>"
        ),
    )
    .await;
    let got = messages(&mut laptop).await;
    assert_eq!(got.len(), 1, "one copy, not two: {got:?}");
    assert!(got[0].child("sent", CARBONS).is_some(), "{got:?}");
    assert!(messages(&mut phone)
        .await
        .iter()
        .all(|m| received(m).is_none()));
    srv.stop().await;
}

const SLIXMPP_CARBONS: &str = r#"
import asyncio, ssl, sys
import slixmpp

bare, password, host, port = sys.argv[1:5]

class Bot(slixmpp.ClientXMPP):
    def __init__(self, resource):
        super().__init__(bare + "/" + resource, password)
        self.ready = asyncio.Event()
        self.originals = []
        self.carbons = []
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", lambda m: self.originals.append(m))
        self.add_event_handler("carbon_received", lambda m: self.carbons.append(m["carbon_received"]))
        self.add_event_handler("failed_auth", lambda e: self.disconnect())

    async def start(self, event):
        # Computes the entity-capabilities hash the next presence carries (XEP-0115).
        await self["xep_0115"].update_caps(broadcast=False)
        self.send_presence()
        await self["xep_0280"].enable()
        self.ready.set()

def bot(resource):
    b = Bot(resource)
    for p in ["xep_0030", "xep_0115", "xep_0280"]:
        b.register_plugin(p)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    b.ssl_context = ctx
    b.connect((host, int(port)), force_starttls=True)
    return b

async def main():
    desk, phone = bot("desk"), bot("phone")
    try:
        await asyncio.wait_for(asyncio.gather(desk.ready.wait(), phone.ready.wait()), 20)
        print("READY", flush=True)
        for _ in range(100):
            if desk.carbons and phone.originals:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything more would be a duplicate
    except Exception as e:
        print("ERROR", repr(e))
    for m in desk.carbons:
        print("DESK CARBON", m["type"], m["to"], m["body"])
    for m in desk.originals:
        print("DESK ORIGINAL", m["body"])
    for m in phone.carbons:
        print("PHONE CARBON", m["body"])
    for m in phone.originals:
        print("PHONE ORIGINAL", m["body"])
    desk.disconnect()
    phone.disconnect()
    await asyncio.wait_for(asyncio.gather(desk.disconnected, phone.disconnected), 10)

asyncio.get_event_loop().run_until_complete(main())
"#;

/// slixmpp's XEP-0280 plugin on two resources of one user, both with carbons and caps: a
/// message to the phone's full JID reaches the phone, and the desk as a `received` carbon
/// (slixmpp accepts it only from its own bare JID), each exactly once.
#[tokio::test]
async fn slixmpp_on_another_resource_gets_the_received_carbon_of_a_full_jid_message() {
    use tokio::io::AsyncBufReadExt;

    if !crate::common::python::has("slixmpp", crate::common::python::SLIXMPP) {
        return;
    }
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_sx_cc").await;
    let (bob, _) = srv.chat_user("bob_sx_cc").await;
    let mut b = Client::login(srv.xmpp, Via::Tcp, &bob, PASSWORD).await;
    let addr = srv.xmpp.tcp;
    let mut child = crate::common::python::script(
        SLIXMPP_CARBONS,
        [
            format!("{alice}@localhost"),
            PASSWORD.to_string(),
            addr.ip().to_string(),
            addr.port().to_string(),
        ],
    )
    .spawn()
    .expect("run python3");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "READY" {
                return true;
            }
            seen.push(line);
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "slixmpp never got ready: {seen:?}");
    b.send_raw(&format!(
        "<message to='{alice}@localhost/phone' type='chat' id='sx1'><body>to the phone</body></message>"
    ))
    .await;
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut out = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            out.push(line);
        }
        out
    })
    .await
    .expect("slixmpp finished");
    let out = child.wait_with_output().await.expect("slixmpp exit");
    let why = format!("{rest:#?}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        rest,
        [
            format!("DESK CARBON chat {alice}@localhost/phone to the phone"),
            "PHONE ORIGINAL to the phone".to_string(),
        ],
        "{why}"
    );
    srv.stop().await;
}
