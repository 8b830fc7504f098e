// The event catalog is compiled into every function (see `Catalog::embedded`): rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../catalog");
}
