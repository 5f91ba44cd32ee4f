use super::*;
use crate::{Arg, BodyReader, BodyWriter, MessageBuilder};

#[test]
fn smoke() {
    for endian in [Endian::Little, Endian::Big] {
        let msg = MessageBuilder::method_call("/org/example", Some("org.example.Iface"), "Do")
            .endian(endian)
            .destination("org.example.Service")
            .body("sua{ss}asv(io)", |w| {
                w.string("hello");
                w.u32(42);
                w.array("{ss}", |w| {
                    w.dict_entry(|w| {
                        w.string("k");
                        w.string("v");
                    })
                });
                w.array("s", |w| {
                    w.string("a");
                    w.string("bc");
                });
                w.variant("ai", |w| w.array("i", |w| w.i32(-1)));
                w.structure(|w| {
                    w.i32(7);
                    w.object_path("/x");
                });
            })
            .build(5);
        assert_eq!(msg.endian(), endian);
        assert_eq!(msg.path(), Some("/org/example"));
        assert_eq!(msg.member(), Some("Do"));
        assert_eq!(msg.signature(), "sua{ss}asv(io)");
        let mut r = BodyReader::new(&msg);
        assert_eq!(r.read_str(), Ok("hello"));
        assert_eq!(r.read_u32(), Ok(42));
        assert_eq!(r.read_str_dict(), Ok(vec![("k", "v")]));
        assert_eq!(r.read_str_array(), Ok(vec!["a", "bc"]));
        r.skip().unwrap();
        r.skip().unwrap();
        assert!(r.is_at_end());
        let args: Vec<_> = msg.args(10).collect();
        assert_eq!(
            args,
            [
                Arg::Str("hello"),
                Arg::Other,
                Arg::Other,
                Arg::Other,
                Arg::Other,
                Arg::Other
            ]
        );
        let out = msg.stamp_sender(":1.5");
        let bytes: Vec<u8> = out.parts().concat();
        let again = Message::parse(bytes.into(), Vec::new()).unwrap();
        assert_eq!(again.sender(), Some(":1.5"));
        assert_eq!(again.destination(), Some("org.example.Service"));
        assert_eq!(again.body(), msg.body());
        assert!(BodyWriter::new(endian).into_bytes().is_empty());
    }
}
