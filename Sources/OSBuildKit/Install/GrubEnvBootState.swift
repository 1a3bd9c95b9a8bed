import Basics
import Bootloader
import DiskImage

/// GRUB: the 1024-byte grubenv in the FAT boot partition (/grub/grubenv, which RAUC on
/// the device sees as /mnt/boot/grub/grubenv), rewritten in place through `FATVolume`.
/// The try limit comes from the board (bootloader.tries) or, without a board, from the
/// image's own /grub/grub.cfg as osbuild renders it.
struct GrubEnvBootState: BootStateBackend {
    static let envPath = "/grub/grubenv"
    static let cfgPath = "/grub/grub.cfg"
    static let espType = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"

    let image: OpenImage
    let volume: FATVolume
    let file: FATVolume.FileExtent
    let partitionName: String
    let tries: Int

    init(image: OpenImage, tries: Int?) throws {
        self.image = image
        // The ESP first, then any partition named boot*.
        let candidates = image.partitions.filter { $0.type.lowercased() == Self.espType }
            + image.partitions.filter { $0.type.lowercased() != Self.espType && ($0.name ?? "").lowercased().hasPrefix("boot") }
        var found: (FATVolume, FATVolume.FileExtent, String)?
        var lastError: (any Error)?
        for p in candidates where p.start + p.size <= image.size && found == nil {
            do {
                let v = try FATVolume(fd: image.fd, imagePath: image.path, offset: p.start, length: p.size)
                let f = try v.locate(Self.envPath)
                guard f.size == UInt64(GrubEnv.size) else {
                    throw InstallError(.bootloader, "\(image.path): \(Self.envPath) in partition \(p.name ?? "#\(p.number)") is \(f.size) bytes, not a \(GrubEnv.size)-byte GRUB environment block")
                }
                found = (v, f, p.name ?? "#\(p.number)")
            } catch {
                lastError = error
            }
        }
        guard let (v, f, name) = found else {
            if let lastError { throw lastError }
            throw InstallError(.bootloader, "\(image.path): no EFI system partition or boot* partition holds \(Self.envPath)")
        }
        (volume, file, partitionName) = (v, f, name)
        if let tries {
            self.tries = tries
        } else if let cfg = try? v.locate(Self.cfgPath), let n = GrubConfig.tries(inConfig: String(decoding: try v.read(cfg), as: UTF8.self)) {
            self.tries = n
        } else {
            throw InstallError(.bootloader, "\(image.path): cannot tell GRUB's try limit (\(Self.cfgPath) in partition \(name) is not an osbuild grub.cfg); pass --board")
        }
    }

    var description: String { "grubenv \(Self.envPath) in partition \(partitionName)" }

    func load() throws -> [(String, String)] {
        do {
            return try GrubEnv.parse(try volume.read(file))
        } catch let e as MessageError {
            throw InstallError(.bootloader, "\(image.path): \(description): \(e.message)")
        }
    }

    func store(_ vars: [(String, String)]) throws {
        try volume.overwrite(file, with: try GrubEnv.block(vars))
    }

    func bootSlot() throws -> String {
        let vars = try load()
        guard let s = GrubSlotState.bootSlot(vars, tries: tries) else {
            let shown = vars.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            throw InstallError(.bootloader, "\(image.path): \(description) has no bootable slot (\(shown); tries \(tries)); GRUB would not boot this image")
        }
        return s
    }

    func isMarkedGood(_ slot: String) throws -> Bool {
        GrubSlotState.value(try load(), slot + "_OK") == "1"
    }

    func markBad(_ slot: String) throws {
        try store(GrubSlotState.markBad(try load(), slot: slot))
    }

    func makePrimary(_ slot: String) throws {
        try store(GrubSlotState.makePrimary(try load(), slot: slot))
    }
}
