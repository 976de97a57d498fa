//! XEP-0050 Ad-Hoc Commands on the server JID, over real sockets: the server advertises
//! commands, lists `ping` on the commands node, describes it on its node, and runs it in one
//! stage; an unknown command is not found. (aioxmpp's upstream suite, `tools/upstream-suites.sh`,
//! asks exactly this of a server.)

use parley::xmpp::stream::Element;

use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";

async fn online(srv: &TestServer) -> Client {
    let u = srv.users("adhoc", 1).await;
    Client::login(srv.xmpp, Via::Tcp, &srv.local(u[0].1), PASSWORD).await
}

fn vars(q: &Element, name: &str, attr: &str) -> Vec<String> {
    q.elements()
        .filter(|e| e.name == name)
        .filter_map(|e| e.attr(attr).map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_server_advertises_commands_and_lists_ping_on_the_commands_node() {
    let srv = TestServer::start().await;
    let mut c = online(&srv).await;
    let r = c
        .iq(
            "i",
            &format!("<iq type='get' id='i' to='localhost'><query xmlns='{INFO}'/></iq>"),
        )
        .await;
    let q = r.child("query", INFO).expect("disco#info");
    assert!(vars(q, "feature", "var").contains(&COMMANDS.to_owned()));
    let r = c
        .iq(
            "l",
            &format!("<iq type='get' id='l' to='localhost'><query xmlns='{ITEMS}' node='{COMMANDS}'/></iq>"),
        )
        .await;
    let q = r.child("query", ITEMS).expect("disco#items");
    assert_eq!(q.attr("node"), Some(COMMANDS));
    assert_eq!(vars(q, "item", "node"), vec!["ping".to_owned()]);
    assert_eq!(vars(q, "item", "jid"), vec!["localhost".to_owned()]);
    let r = c
        .iq(
            "n",
            &format!(
                "<iq type='get' id='n' to='localhost'><query xmlns='{INFO}' node='ping'/></iq>"
            ),
        )
        .await;
    let q = r.child("query", INFO).expect("node info");
    assert_eq!(vars(q, "identity", "type"), vec!["command-node".to_owned()]);
    assert!(vars(q, "feature", "var").contains(&COMMANDS.to_owned()));
}

#[tokio::test]
async fn executing_ping_completes_in_one_stage_with_a_note() {
    let srv = TestServer::start().await;
    let mut c = online(&srv).await;
    let r = c
        .iq(
            "x",
            &format!("<iq type='set' id='x' to='localhost'><command xmlns='{COMMANDS}' node='ping' action='execute'/></iq>"),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let cmd = r.child("command", COMMANDS).expect("command");
    assert_eq!(cmd.attr("status"), Some("completed"));
    assert!(cmd.attr("sessionid").is_some_and(|s| !s.is_empty()));
    let note = cmd.child("note", COMMANDS).expect("a note");
    assert_eq!(note.text(), "Pong");
}

#[tokio::test]
async fn an_unknown_command_is_item_not_found() {
    let srv = TestServer::start().await;
    let mut c = online(&srv).await;
    let r = c
        .iq(
            "u",
            &format!("<iq type='set' id='u' to='localhost'><command xmlns='{COMMANDS}' node='shutdown' action='execute'/></iq>"),
        )
        .await;
    assert_eq!(r.attr("type"), Some("error"));
    let cond = r
        .child("error", "jabber:client")
        .and_then(|e| e.elements().next())
        .map(|c| c.name.clone());
    assert_eq!(cond.as_deref(), Some("item-not-found"));
}
