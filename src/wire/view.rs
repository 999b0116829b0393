//! What every packet view has in common, written once.
//!
//! [`view!`] declares a view: the struct over a buffer `T: AsRef<[u8]>` and its three
//! constructors/destructors (`new_unchecked`, `new_checked`, `into_inner`). The view
//! module keeps what differs between headers: its `mod field`, its `check_len` (which
//! `new_checked` calls, so each view states its own errors), its getters and setters.
//!
//! Two more add the accessors that views share because their headers do, the same bytes
//! at the same offsets meaning the same thing: [`l4_ports!`] the source and destination
//! ports of TCP, UDP and SCTP (bytes 0..4 of all three); [`icmp_header!`] the 8-byte
//! header of ICMPv4 and ICMPv6 (code, checksum, bytes 4..8, echo identifier and sequence
//! number, the data after the header). Fields that only look alike (an IPv4 and an IPv6
//! address, each protocol's checksum over its own bytes) stay written out in their views.
//!
//! The macros expand to the same code the views had written out: `#[inline]` methods
//! indexing the buffer, `new_unchecked` a `const fn`; no added check or indirection.
//! Names in the expansions other than `$crate` paths (`field::…`, `is_error`) are those
//! of the invoking view module.
//!
//! Imports nothing (the expansions name `$crate::wire::{Error, get_u16, …}`, the helpers
//! the views use anyway); the views import these macros.

/// Declares a view struct `$name<T: AsRef<[u8]>> { buffer: T }` with `new_unchecked`,
/// `new_checked` (which calls the view's own `check_len`) and `into_inner`. The
/// attributes before `pub struct` (its doc comment) go on the struct.
macro_rules! view {
    ($(#[$attr:meta])* pub struct $name:ident;) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            #[doc = concat!(
                "Wraps a buffer without checking it; see [`",
                stringify!($name),
                "::check_len`](Self::check_len)."
            )]
            #[inline]
            pub const fn new_unchecked(buffer: T) -> $name<T> {
                $name { buffer }
            }

            #[doc = concat!(
                "Wraps a buffer and checks it with [`",
                stringify!($name),
                "::check_len`](Self::check_len)."
            )]
            #[inline]
            pub fn new_checked(buffer: T) -> Result<$name<T>, $crate::wire::Error> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// Consumes the view, returning the buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

/// The accessors of the common ICMP header, for a view `$name` declared with [`view!`]
/// in a module that has `field::{CODE, TYPE, CHECKSUM, REST_OF_HEADER, IDENT, SEQ_NO,
/// DATA}`, a `const fn is_error(u8) -> bool` and its own `msg_type` getter. Every
/// accessor stays inside the 8-byte header (or is the data after it), which each ICMP
/// view's `check_len` guarantees.
macro_rules! icmp_header {
    ($name:ident) => {
        impl<T: AsRef<[u8]>> $name<T> {
            /// The code.
            #[inline]
            pub fn msg_code(&self) -> u8 {
                self.buffer.as_ref()[field::CODE]
            }

            /// The checksum field.
            #[inline]
            pub fn checksum(&self) -> u16 {
                $crate::wire::get_u16(&self.buffer.as_ref()[field::CHECKSUM])
            }

            /// Bytes 4..8 as one word (their meaning depends on the type: identifier and
            /// sequence number, MTU, pointer, …).
            #[inline]
            pub fn rest_of_header(&self) -> u32 {
                $crate::wire::get_u32(&self.buffer.as_ref()[field::REST_OF_HEADER])
            }

            /// The identifier of an echo (or other query) message (bytes 4..6).
            #[inline]
            pub fn echo_ident(&self) -> u16 {
                $crate::wire::get_u16(&self.buffer.as_ref()[field::IDENT])
            }

            /// The sequence number of an echo (or other query) message (bytes 6..8).
            #[inline]
            pub fn echo_seq_no(&self) -> u16 {
                $crate::wire::get_u16(&self.buffer.as_ref()[field::SEQ_NO])
            }

            /// True for the error messages, which embed the start of an offending packet
            /// in their data.
            #[inline]
            pub fn is_error(&self) -> bool {
                is_error(self.msg_type())
            }

            /// The data after the 8-byte header: the echo payload, or the embedded packet
            /// of an error.
            #[inline]
            pub fn data(&self) -> &[u8] {
                &self.buffer.as_ref()[field::DATA]
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Sets the message type.
            #[inline]
            pub fn set_msg_type(&mut self, value: u8) {
                self.buffer.as_mut()[field::TYPE] = value
            }

            /// Sets the code.
            #[inline]
            pub fn set_msg_code(&mut self, value: u8) {
                self.buffer.as_mut()[field::CODE] = value
            }

            /// Sets the checksum field.
            #[inline]
            pub fn set_checksum(&mut self, value: u16) {
                $crate::wire::put_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
            }

            /// Sets bytes 4..8 as one word.
            #[inline]
            pub fn set_rest_of_header(&mut self, value: u32) {
                $crate::wire::put_u32(&mut self.buffer.as_mut()[field::REST_OF_HEADER], value)
            }

            /// Sets the echo identifier (bytes 4..6).
            #[inline]
            pub fn set_echo_ident(&mut self, value: u16) {
                $crate::wire::put_u16(&mut self.buffer.as_mut()[field::IDENT], value)
            }

            /// Sets the echo sequence number (bytes 6..8).
            #[inline]
            pub fn set_echo_seq_no(&mut self, value: u16) {
                $crate::wire::put_u16(&mut self.buffer.as_mut()[field::SEQ_NO], value)
            }

            /// The data after the 8-byte header, mutable.
            #[inline]
            pub fn data_mut(&mut self) -> &mut [u8] {
                &mut self.buffer.as_mut()[field::DATA]
            }
        }
    };
}

/// The source and destination ports of TCP, UDP and SCTP: big-endian `u16`s at bytes
/// 0..2 and 2..4 in all three (which is why an ICMP error's 8 embedded transport bytes
/// carry them), for a view `$name` declared with [`view!`] in a module that has
/// `field::{SRC_PORT, DST_PORT}` and a `check_len` that guarantees the header.
macro_rules! l4_ports {
    ($name:ident) => {
        impl<T: AsRef<[u8]>> $name<T> {
            /// The source port.
            #[inline]
            pub fn src_port(&self) -> u16 {
                $crate::wire::get_u16(&self.buffer.as_ref()[field::SRC_PORT])
            }

            /// The destination port.
            #[inline]
            pub fn dst_port(&self) -> u16 {
                $crate::wire::get_u16(&self.buffer.as_ref()[field::DST_PORT])
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Sets the source port (the checksum is not updated).
            #[inline]
            pub fn set_src_port(&mut self, value: u16) {
                $crate::wire::put_u16(&mut self.buffer.as_mut()[field::SRC_PORT], value)
            }

            /// Sets the destination port (the checksum is not updated).
            #[inline]
            pub fn set_dst_port(&mut self, value: u16) {
                $crate::wire::put_u16(&mut self.buffer.as_mut()[field::DST_PORT], value)
            }
        }
    };
}

pub(super) use {icmp_header, l4_ports, view};
