// A zip archive of files stored as they are (method 0, "stored"): the cut-outs are PNG or WebP,
// compressed already, so deflating them again would gain nothing. No library: the format's
// local headers, central directory and end record are written here (PKWARE APPNOTE 4.3/4.4).
"use strict";

(function () {
  const CRC_TABLE = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    CRC_TABLE[n] = c >>> 0;
  }

  function crc32(bytes) {
    let crc = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
    return (crc ^ 0xffffffff) >>> 0;
  }

  function dosTime(date) {
    const time = (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1);
    const day = ((Math.max(date.getFullYear(), 1980) - 1980) << 9) |
      ((date.getMonth() + 1) << 5) | date.getDate();
    return [time, day];
  }

  // entries: [{name: "folder/photo.png", bytes: Uint8Array}]; returns a Blob (application/zip).
  // Names are written as UTF-8 (general purpose flag bit 11). Archives stay under 4 GB: no Zip64.
  function makeZip(entries, date) {
    const encoder = new TextEncoder();
    const [time, day] = dosTime(date || new Date());
    const parts = [];
    const central = [];
    let offset = 0;
    for (const entry of entries) {
      const name = encoder.encode(entry.name);
      const crc = crc32(entry.bytes);
      const size = entry.bytes.length;
      const local = new DataView(new ArrayBuffer(30));
      local.setUint32(0, 0x04034b50, true);  // local file header signature
      local.setUint16(4, 20, true);          // version needed: 2.0
      local.setUint16(6, 0x0800, true);      // flags: UTF-8 names
      local.setUint16(8, 0, true);           // method: stored
      local.setUint16(10, time, true);
      local.setUint16(12, day, true);
      local.setUint32(14, crc, true);
      local.setUint32(18, size, true);       // compressed size
      local.setUint32(22, size, true);       // uncompressed size
      local.setUint16(26, name.length, true);
      local.setUint16(28, 0, true);          // extra field length
      parts.push(local, name, entry.bytes);

      const record = new DataView(new ArrayBuffer(46));
      record.setUint32(0, 0x02014b50, true); // central directory header signature
      record.setUint16(4, 20, true);         // version made by
      record.setUint16(6, 20, true);         // version needed
      record.setUint16(8, 0x0800, true);
      record.setUint16(10, 0, true);
      record.setUint16(12, time, true);
      record.setUint16(14, day, true);
      record.setUint32(16, crc, true);
      record.setUint32(20, size, true);
      record.setUint32(24, size, true);
      record.setUint16(28, name.length, true);
      // 30: extra length, 32: comment length, 34: disk, 36: internal attributes: all 0
      record.setUint32(38, 0, true);         // external attributes
      record.setUint32(42, offset, true);    // where the local header starts
      central.push(record, name);
      offset += 30 + name.length + size;
    }
    let centralSize = 0;
    for (const part of central) centralSize += part.byteLength;
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);      // end of central directory signature
    end.setUint16(8, entries.length, true);  // entries on this disk
    end.setUint16(10, entries.length, true); // entries in all
    end.setUint32(12, centralSize, true);
    end.setUint32(16, offset, true);         // where the central directory starts
    return new Blob([...parts, ...central, end], { type: "application/zip" });
  }

  window.bgremoveZip = { makeZip, crc32 };
})();
