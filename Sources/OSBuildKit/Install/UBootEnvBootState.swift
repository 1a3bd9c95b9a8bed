import Basics
import Bootloader
import Boards
import DiskImage

/// U-Boot (rpi4-64): the raw environment (UBootBoot.envSize bytes, CRC32, not redundant)
/// at the start of the `bootstate` partition, with RAUC's U-Boot variables: BOOT_ORDER and
/// BOOT_<slot>_LEFT (attempts left; the boot script takes one per boot, Linux refills it
/// on a good boot). Same as rauc's uboot backend: booted = first in BOOT_ORDER with
/// attempts left; bad = out of BOOT_ORDER with 0 left; primary = first in BOOT_ORDER with
/// the full `tries`.
struct UBootEnvBootState: BootStateBackend {
    static let partitionName = "bootstate"
    let image: OpenImage
    let offset: UInt64
    let size: Int
    let tries: Int
    let label: String

    init(image: OpenImage, board: Board?, tries: Int?) throws {
        self.image = image
        var part = image.partition(named: Self.partitionName)
        if let board, board.string("disk.table") == "mbr", let e = try BoardPartitions(board: board).named(Self.partitionName) {
            part = image.partitions.first { $0.number == e.number }
        }
        guard let p = part else {
            throw InstallError(.bootloader, "\(image.path): no partition '\(Self.partitionName)' holding the U-Boot environment")
        }
        size = UBootBoot.envSize
        guard UInt64(size) <= p.size, p.start + UInt64(size) <= image.size else {
            throw InstallError(.bootloader, "\(image.path): partition \(Self.partitionName) (\(p.size) bytes) cannot hold a \(size)-byte U-Boot environment")
        }
        offset = p.start
        self.tries = tries ?? 3
        label = p.name ?? "#\(p.number)"
        _ = try load()
    }

    var description: String { "U-Boot environment in partition \(label)" }

    func load() throws -> UBootEnvironment {
        do {
            return try UBootEnvironment.parse(try PositionalIO.read(image.fd, count: size, at: offset, path: image.path))
        } catch let e as MessageError {
            throw InstallError(.bootloader, "\(image.path): \(description): \(e.message)")
        }
    }

    func store(_ env: UBootEnvironment) throws {
        try PositionalIO.write(image.fd, try env.render(size: size), at: offset, path: image.path)
    }

    func order(_ env: UBootEnvironment) -> [String] {
        (env[UBootABScript.orderVariable] ?? "").split(separator: " ").map(String.init)
    }

    func left(_ env: UBootEnvironment, _ slot: String) -> Int { Int(env[UBootABScript.leftVariable(slot)] ?? "") ?? 0 }

    func bootSlot() throws -> String {
        let env = try load()
        guard let s = order(env).first(where: { left(env, $0) > 0 }) else {
            throw InstallError(.bootloader, "\(image.path): \(description) has no slot with attempts left (\(env.variables.map { "\($0.name)=\($0.value)" }.joined(separator: " ")))")
        }
        return s
    }

    func isMarkedGood(_ slot: String) throws -> Bool {
        let env = try load()
        return order(env).contains(slot) && left(env, slot) > 0
    }

    func markBad(_ slot: String) throws {
        var env = try load()
        env[UBootABScript.orderVariable] = order(env).filter { $0 != slot }.joined(separator: " ")
        env[UBootABScript.leftVariable(slot)] = "0"
        try store(env)
    }

    func makePrimary(_ slot: String) throws {
        var env = try load()
        env[UBootABScript.orderVariable] = ([slot] + order(env).filter { $0 != slot }).joined(separator: " ")
        env[UBootABScript.leftVariable(slot)] = String(tries)
        try store(env)
    }
}
