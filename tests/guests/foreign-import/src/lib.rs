//! Test guest: a component built against some other host's WIT (it imports
//! `test:foreign/gadget`). The agent must refuse it at install time, naming
//! the missing import, instead of failing at the first command.
// wit-bindgen's export glue expands at the crate root.
#![allow(unsafe_code)]

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package test:foreign;
            interface gadget {
                poke: func() -> u32;
            }
            world foreign {
                import gadget;
                export run: func() -> u32;
            }
        ",
        world: "foreign",
    });
}

struct Foreign;

impl bindings::Guest for Foreign {
    fn run() -> u32 {
        bindings::test::foreign::gadget::poke()
    }
}

bindings::export!(Foreign with_types_in bindings);
