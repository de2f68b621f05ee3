//! placeholder: the objects helper writes this crate
