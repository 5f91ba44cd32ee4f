mod common;
use common::*;
#[test]
fn probe() {
    let bus = TestBus::dbus_daemon();
    let mut a = bus.raw();
    for r in [
        "",
        "type='signal'",
        "type='foo'",
        "foo='bar'",
        "arg63='x'",
        "arg64='x'",
        "path='notapath'",
        "path='/a/'",
        "sender=''",
        "type='signal",
        "eavesdrop='maybe'",
        "eavesdrop='true'",
        "arg0namespace='a..b'",
        "arg0namespace='a'",
        "arg0namespace='a.b.'",
        "interface='a'",
        "member='1a'",
        "type='signal',type='signal'",
        "path='/a',path_namespace='/a'",
        "path_namespace='/a/'",
        "path_namespace='/'",
        "arg0path='nopath'",
        "arg0path='/a/'",
        "arg1path='x'",
        "destination='a.b'",
        "destination=':1.5'",
        "sender='a'",
        "type=signal",
        "type='signal' ",
        " type='signal'",
        "type='signal',",
        ",type='signal'",
        "type = 'signal'",
        "arg0='it'\\''s'",
        "arg0=''",
        "member='a'\\''b'",
        "arg3='x',arg3path='/a'",
        "arg0='a',arg0namespace='a.b'",
        "type='error'",
        "type='method_return'",
        "type='method_call'",
        "interface='a.b',member='C',path='/d',sender='e.f',destination='g.h',arg0='i',arg1path='/j',arg2namespace='k.l'",
    ] {
        let m = a.call_bus("AddMatch", vec![Value::str(r)]);
        println!("{r:?} -> {}", m.summary(&[]));
        if m.is_return() {
            let m = a.call_bus("RemoveMatch", vec![Value::str(r)]);
            println!("    remove -> {}", m.summary(&[]));
        }
    }
    println!(
        "remove missing -> {}",
        a.call_bus(
            "RemoveMatch",
            vec![Value::str("type='signal',member='Nope'")]
        )
        .summary(&[])
    );
    println!(
        "remove invalid -> {}",
        a.call_bus("RemoveMatch", vec![Value::str("type='bogus'")])
            .summary(&[])
    );
    a.add_match("type='signal',member='X'");
    println!(
        "remove reordered -> {}",
        a.call_bus("RemoveMatch", vec![Value::str("member='X',type='signal'")])
            .summary(&[])
    );
    a.add_match("member='X',arg0='a\\'");
    println!(
        "remove backslash -> {}",
        a.call_bus("RemoveMatch", vec![Value::str("member='X',arg0='a\\'")])
            .summary(&[])
    );
}
