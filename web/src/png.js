// Reads the text chunks (tEXt, iTXt, zTXt) of a PNG file: ComfyUI stores `prompt` and `workflow` there.

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** Returns {keyword: text} for every text chunk; throws for a file that is not a PNG. */
export async function readPngText(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new Error("not a PNG file (bad signature)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8");
  const out = {};
  let pos = 8;
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = latin1.decode(bytes.subarray(pos + 4, pos + 8));
    const data = bytes.subarray(pos + 8, pos + 8 + length);
    if (type === "tEXt") {
      const sep = data.indexOf(0);
      if (sep > 0) out[latin1.decode(data.subarray(0, sep))] = latin1.decode(data.subarray(sep + 1));
    } else if (type === "iTXt") {
      const entry = await readITXt(data, latin1, utf8);
      if (entry) out[entry[0]] = entry[1];
    } else if (type === "zTXt") {
      const sep = data.indexOf(0);
      if (sep > 0) out[latin1.decode(data.subarray(0, sep))] = latin1.decode(await inflate(data.subarray(sep + 2)));
    } else if (type === "IEND") {
      break;
    }
    pos += 12 + length;
  }
  return out;
}

async function readITXt(data, latin1, utf8) {
  const sep = data.indexOf(0);
  if (sep <= 0) return null;
  const keyword = latin1.decode(data.subarray(0, sep));
  const compressed = data[sep + 1] === 1;
  let p = sep + 3;
  const langEnd = data.indexOf(0, p);
  const transEnd = data.indexOf(0, langEnd + 1);
  if (langEnd < 0 || transEnd < 0) return null;
  p = transEnd + 1;
  const body = data.subarray(p);
  return [keyword, utf8.decode(compressed ? await inflate(body) : body)];
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
