//! A second third-party XMPP library, Python `aioxmpp` (stricter than slixmpp about RFC 6120
//! addressing: it drops an answer to an iq without `to` that comes "from" the domain), logs in
//! over STARTTLS, asks disco#info of its own account and of the server, and chats with our test
//! client. Under `CI=true` a missing aioxmpp fails the test; elsewhere it is skipped with a note.

use crate::common::python;
use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const SCRIPT: &str = r#"
import asyncio, sys, logging
import aioxmpp, aioxmpp.disco, aioxmpp.roster, aioxmpp.security_layer

jid, password, peer, host, port = sys.argv[1:6]

async def main():
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[(host, int(port), aioxmpp.connector.STARTTLSConnector())],
    )
    got = asyncio.get_event_loop().create_future()
    def on_message(msg):
        if msg.body and any(v == "pong" for v in msg.body.values()) and not got.done():
            got.set_result(True)
    client.stream.register_message_callback(aioxmpp.MessageType.CHAT, None, on_message)
    roster = client.summon(aioxmpp.roster.RosterClient)
    disco = client.summon(aioxmpp.disco.DiscoClient)
    async with client.connected() as stream:
        info = await asyncio.wait_for(disco.query_info(client.local_jid.bare()), 10)
        cats = {(i.category, i.type_) for i in info.identities}
        assert ("account", "registered") in cats, cats
        server = await asyncio.wait_for(disco.query_info(aioxmpp.JID.fromstr(jid).replace(localpart=None)), 10)
        assert any(i.category == "server" for i in server.identities), server.identities
        msg = aioxmpp.Message(to=aioxmpp.JID.fromstr(peer), type_=aioxmpp.MessageType.CHAT)
        msg.body[None] = "hello from aioxmpp"
        await stream.send(msg)
        await asyncio.wait_for(got, 15)
    print("OK")

asyncio.run(asyncio.wait_for(main(), 40))
"#;

#[tokio::test]
async fn aioxmpp_logs_in_discovers_its_account_and_chats() {
    if !python::has("aioxmpp", python::AIOXMPP) {
        return;
    }
    let srv = TestServer::start().await;
    let (alice, _) = srv.chat_user("alice_aiox").await;
    let (bob, _) = srv.chat_user("bob_aiox").await;
    let mut b = Client::login(srv.xmpp, Via::Ws, &bob, PASSWORD).await;
    let addr = srv.xmpp.tcp;
    let child = python::script(
        SCRIPT,
        [
            format!("{alice}@localhost"),
            PASSWORD.to_string(),
            format!("{bob}@localhost"),
            addr.ip().to_string(),
            addr.port().to_string(),
        ],
    )
    .spawn()
    .expect("run python3");
    let m = b.expect_named("message").await;
    assert_eq!(
        m.child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("hello from aioxmpp")
    );
    let from = m.attr("from").unwrap_or_default().to_owned();
    b.send_raw(&format!(
        "<message to='{from}' type='chat'><body>pong</body></message>"
    ))
    .await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(45), child.wait_with_output())
        .await
        .expect("aioxmpp finished")
        .expect("aioxmpp output");
    assert!(
        out.status.success(),
        "aioxmpp failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop().await;
}
