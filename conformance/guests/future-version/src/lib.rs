//! Test guest: exports `weir:streams/handler` at version 0.9.0, which this
//! host (0.2.0, 0.3.0) does not speak; the host must refuse it naming the world.

wit_bindgen::generate!({
    inline: r#"
        package weir:streams@0.9.0;

        interface handler {
            describe: func() -> string;
        }

        world processor {
            export handler;
        }
    "#,
});

struct FromTheFuture;

impl exports::weir::streams::handler::Guest for FromTheFuture {
    fn describe() -> String {
        "a processor for a newer host".into()
    }
}

export!(FromTheFuture);
