// The README's example, type-checked against index.d.ts by `npx tsc -p .` (node_host.rs).
import { EventKind, Library, MantleError } from './index';

export async function example(pluginPath: string, baseUrl: string, apiKey: string): Promise<string> {
  const lib = new Library(pluginPath); // refuses an incompatible ABI
  const provider = lib.provider('', { baseUrl, apiKey });
  try {
    console.log(provider.catalog().models);
    let text = '';
    for await (const event of provider.stream({ model: 'openai.gpt-oss-120b', messages: [{ role: 'user', content: 'hi' }] })) {
      if (event.kind === EventKind.TEXT_DELTA) text += event.text; // `break` here cancels
    }
    return text;
  } catch (e) {
    if (e instanceof MantleError) console.error(e.codeName, e.detail);
    throw e;
  } finally {
    provider.close();
  }
}
