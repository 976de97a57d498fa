//! A third-party XMPP client (Python `slixmpp`) logs in over STARTTLS and chats with our test
//! client: proof that the server speaks standard XMPP, not only what our own client expects.
//! Under `CI=true` a missing slixmpp fails the test; elsewhere it is skipped with a note.

use crate::common::python;
use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const SCRIPT: &str = r#"
import asyncio, ssl, sys
import slixmpp

jid, password, peer, host, port, mode = sys.argv[1:7]

class Bot(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ok = False
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_auth", lambda e: self.disconnect())

    async def start(self, event):
        self.send_presence()
        await self.get_roster()
        self.send_message(mto=peer, mbody="hello from slixmpp", mtype="chat")

    def on_message(self, msg):
        if msg["type"] == "chat" and msg["body"] == "pong":
            self.ok = True
            self.disconnect()

bot = Bot()
bot.register_plugin("xep_0030")
bot.register_plugin("xep_0199")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
bot.ssl_context = ctx
if mode == "direct":
    bot.connect((host, int(port)), use_ssl=True, disable_starttls=True)
else:
    bot.connect((host, int(port)), force_starttls=True)
loop = asyncio.get_event_loop()
loop.run_until_complete(asyncio.wait_for(bot.disconnected, 20))
print("OK" if bot.ok else "FAILED")
sys.exit(0 if bot.ok else 1)
"#;

async fn chat_with_slixmpp(mode: &str) {
    if !python::has("slixmpp", python::SLIXMPP) {
        return;
    }
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user(&format!("alice_sx_{mode}")).await;
    let (bob, _) = srv.chat_user(&format!("bob_sx_{mode}")).await;
    let mut b = Client::login(srv.xmpp, Via::Ws, &bob, PASSWORD).await;
    let addr = if mode == "direct" {
        srv.xmpp.tls
    } else {
        srv.xmpp.tcp
    };
    let child = python::script(
        SCRIPT,
        [
            format!("{alice}@localhost"),
            PASSWORD.to_string(),
            format!("{bob}@localhost"),
            addr.ip().to_string(),
            addr.port().to_string(),
            mode.to_string(),
        ],
    )
    .spawn()
    .expect("run python3");
    let m = b.expect_named("message").await;
    assert_eq!(
        m.child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("hello from slixmpp")
    );
    let from = m.attr("from").unwrap_or_default().to_owned();
    assert!(from.starts_with(&format!("{alice}@localhost/")), "{from}");
    b.send_raw(&format!(
        "<message to='{from}' type='chat'><body>pong</body></message>"
    ))
    .await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("slixmpp finished")
        .expect("slixmpp output");
    assert!(
        out.status.success(),
        "slixmpp failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop().await;
}

#[tokio::test]
async fn slixmpp_chats_over_starttls() {
    chat_with_slixmpp("starttls").await;
}

#[tokio::test]
async fn slixmpp_chats_over_direct_tls() {
    chat_with_slixmpp("direct").await;
}
