import Codecs
import Foundation
import Testing

@Suite struct CRC32Tests {
    /// The CRC-32/ISO-HDLC check value, and continuation from a seed equals one pass.
    @Test func checkValueAndContinuation() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        #expect(CRC32.checksum(Array(data[40_000...]), seed: CRC32.checksum(Array(data[..<40_000]))) == CRC32.checksum(data))
        #expect(CRC32.checksum([UInt8]()) == 0)
    }
}
