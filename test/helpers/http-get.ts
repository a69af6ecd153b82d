// One GET over a real socket (no keep-alive), read to the end: what a client in the field sends.
import { request as httpRequest } from 'node:http'

export interface Answer { status: number, headers: Record<string, string | string[] | undefined> }

export async function get (port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, res => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}
